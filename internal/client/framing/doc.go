// Package framing turns encoded media frames into RTP payloads and back:
// a packetizer per codec for the sending side and an assembler that puts
// received packets back in order, rebuilds whole frames and reports loss.
//
// Neither side looks inside a frame beyond what RTP payload formats
// require. That is deliberate: with end-to-end encryption (SFrame) a frame
// is opaque except for a short clear prefix, so the VP8 payload descriptor
// written here depends only on the frame boundaries, never on its bytes.
// The payload descriptors of received packets are read with the parsers
// the SFU uses (internal/codecs), so that both read them alike.
package framing
