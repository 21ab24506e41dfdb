// Package oidcop runs a real OpenID provider for tests: zitadel/oidc's op
// package with its example in-memory storage and login page, on a
// loopback port, plus a "groups" claim per user. Its users are those of
// the example storage: "test-user@127.0.0.1" (subject id1) and
// "test-user2" (id2), both with the password Password.
package oidcop

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Password is the password of the example users.
const Password = "verysecure"

// The example users' usernames and subjects.
const (
	User1, Subject1 = "test-user@127.0.0.1", "id1"
	User2, Subject2 = "test-user2", "id2"
)

// Client is a client registered at the provider.
type Client struct {
	ID, Secret   string
	RedirectURIs []string
}

// OP is a running provider.
type OP struct {
	Issuer string
	groups map[string][]string
}

// groupStorage adds the groups claim to the ID token and the userinfo
// answer.
type groupStorage struct {
	*storage.Storage
	groups map[string][]string
}

func (g *groupStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, token op.IDTokenRequest, scopes []string) error {
	if err := g.Storage.SetUserinfoFromRequest(ctx, ui, token, scopes); err != nil {
		return err
	}
	ui.AppendClaims("groups", g.groups[token.GetSubject()])
	return nil
}

func (g *groupStorage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := g.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	ui.AppendClaims("groups", g.groups[ui.Subject])
	return nil
}

// Start runs a provider until the test ends. groups maps subjects to the
// values of their groups claim.
func Start(t testing.TB, groups map[string][]string, clients ...Client) *OP {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + l.Addr().String()
	cs := map[string]*storage.Client{}
	for _, c := range clients {
		cs[c.ID] = storage.WebClient(c.ID, c.Secret, c.RedirectURIs...)
	}
	st := &groupStorage{Storage: storage.NewStorageWithClients(storage.NewUserStore(issuer), cs), groups: groups}
	h := exampleop.SetupServer(issuer, st, nil, false, op.WithAllowInsecure())
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &OP{Issuer: issuer, groups: groups}
}

// SignIn follows a browser's way from start (a URL that redirects to the
// provider) through the provider's login form with username and password,
// until a redirect to a URL starting with stopAt, which it returns without
// following. hc must have a cookie jar.
func SignIn(hc *http.Client, start, username, password, stopAt string) (*url.URL, error) {
	c := *hc
	var stopped *url.URL
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), stopAt) {
			stopped = req.URL
			return http.ErrUseLastResponse
		}
		if len(via) > 20 {
			return fmt.Errorf("too many redirects")
		}
		return nil
	}
	resp, err := c.Get(start)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if stopped != nil {
		return stopped, nil
	}
	id := resp.Request.URL.Query().Get("authRequestID")
	if id == "" {
		return nil, fmt.Errorf("no login form at %s (%s)", resp.Request.URL, resp.Status)
	}
	loginURL := resp.Request.URL.Scheme + "://" + resp.Request.URL.Host + "/login/username"
	resp, err = c.PostForm(loginURL, url.Values{"id": {id}, "username": {username}, "password": {password}})
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if stopped == nil {
		return nil, fmt.Errorf("the provider did not redirect back (%s): %.300s", resp.Status, body)
	}
	return stopped, nil
}
