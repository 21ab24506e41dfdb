// Package ogg reads the packets of an Ogg stream (RFC 3533), following
// lacing across pages, as needed to send an Ogg Opus file (RFC 7845) one
// Opus packet at a time. Writing Ogg Opus is left to Pion's oggwriter.
package ogg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxPacketSize bounds the packets read, so that a corrupt file cannot make
// the reader allocate without limit.
const MaxPacketSize = 1 << 20

const pageHeaderLen = 27

// Reader returns the packets of the first logical stream of an Ogg file.
type Reader struct {
	r      io.Reader
	serial uint32
	first  bool

	hdr     [pageHeaderLen]byte
	lacing  [255]byte
	segs    []byte // lacing values of the current page not yet consumed
	payload []byte // data of the current page not yet consumed
	page    []byte
}

// NewReader returns a reader of the packets in r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, first: true, page: make([]byte, 0, 255*255)}
}

// ReadPacket reads the next packet into buf (grown when too small). At the
// end of the stream it returns io.EOF.
func (r *Reader) ReadPacket(buf []byte) ([]byte, error) {
	pkt := buf[:0]
	for {
		for len(r.segs) > 0 {
			n := int(r.segs[0])
			r.segs = r.segs[1:]
			if n > len(r.payload) {
				return nil, errors.New("ogg: page shorter than its lacing values")
			}
			if len(pkt)+n > MaxPacketSize {
				return nil, fmt.Errorf("ogg: packet exceeds %d bytes", MaxPacketSize)
			}
			pkt = append(pkt, r.payload[:n]...)
			r.payload = r.payload[n:]
			if n < 255 {
				return pkt, nil
			}
		}
		if err := r.nextPage(); err != nil {
			if errors.Is(err, io.EOF) && len(pkt) > 0 {
				return nil, errors.New("ogg: stream ends inside a packet")
			}
			return nil, err
		}
	}
}

// nextPage reads pages until one of the first logical stream.
func (r *Reader) nextPage() error {
	for {
		if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return errors.New("ogg: truncated page header")
			}
			return err
		}
		if !bytes.Equal(r.hdr[0:4], []byte("OggS")) || r.hdr[4] != 0 {
			return errors.New("ogg: bad page signature or version")
		}
		serial := binary.LittleEndian.Uint32(r.hdr[14:])
		nsegs := int(r.hdr[26])
		lacing := r.lacing[:nsegs]
		if _, err := io.ReadFull(r.r, lacing); err != nil {
			return fmt.Errorf("ogg: truncated lacing table: %w", err)
		}
		size := 0
		for _, l := range lacing {
			size += int(l)
		}
		r.page = r.page[:size]
		if _, err := io.ReadFull(r.r, r.page); err != nil {
			return fmt.Errorf("ogg: truncated page: %w", err)
		}
		if r.first {
			r.first, r.serial = false, serial
		}
		if serial != r.serial {
			continue // another logical stream
		}
		r.segs, r.payload = lacing, r.page
		return nil
	}
}
