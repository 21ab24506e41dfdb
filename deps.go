//go:build tools

package main

import (
	_ "github.com/chromedp/cdproto/page"
	_ "github.com/chromedp/chromedp"
	_ "github.com/coder/websocket"
	_ "github.com/pion/ice/v4"
	_ "github.com/pion/interceptor"
	_ "github.com/pion/interceptor/pkg/nack"
	_ "github.com/pion/rtcp"
	_ "github.com/pion/rtp"
	_ "github.com/pion/webrtc/v4"
	_ "golang.org/x/crypto/argon2"
	_ "golang.org/x/image/vp8"
	_ "modernc.org/sqlite"
)
