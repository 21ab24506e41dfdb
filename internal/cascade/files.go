package cascade

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"conclave/internal/files"
	"conclave/internal/nodeca"
)

// Meeting files across nodes (docs/cluster.md, "Meeting files across
// nodes").
//
// A file stays on the node its sender uploaded it to, which announces it
// on every link (msgFile: meeting, id, size; again to a node that links
// later). A member on another node downloads it from its own node, which
// fetches it on demand from the node keeping it over a connection of its
// own: a new mutually authenticated TLS 1.3 connection to that node's
// node-to-node listener, with the same certificates and trust as a link,
// told apart from a link by its ALPN protocol (alpnFiles). One request,
// one answer, then the connection closes:
//
//	request (fetching node):  frameFileRequest, JSON {"meeting", "id"}
//	answer (keeping node):    frameFileHead, JSON {"status", "size"},
//	                          then, for "ok", exactly size bytes
//
// File bytes never share a connection with a link, so they never wait in
// (nor make media and control wait in) the link's queues or its TCP
// send buffer: each connection has its own flow and congestion control.
// The keeping node serves a file only to a node that has admitted members
// of the file's meeting (Rooms.HasMembers), and only a file of that
// meeting; the fetching node checks its own member's upload token first,
// as for a local file. The bytes are the sender's ciphertext: neither
// node can read them.
//
// A node without a node-to-node listener (an edge node, which only dials)
// cannot be dialled: the fetching node asks it over the link to connect
// back (msgFileWant with a one-time token), and it does, to the fetching
// node's listener, under alpnFilesBack; its first frame (frameFileBack)
// carries the token, then the request and the answer go as above, the
// roles of TLS client and server swapped.

// ALPN protocols of file connections. A link offers no ALPN protocol; the
// listener answers ALPN only to a client offering one of these, so other
// clients (links, TLS scanners) see no change.
const (
	alpnFiles     = "conclave-files/1"
	alpnFilesBack = "conclave-files-back/1"
)

// Frames of a file connection (never valid on a link).
const (
	frameFileRequest = 3
	frameFileHead    = 4
	frameFileBack    = 5 // JSON {"token"}: the connection asked for by msgFileWant
	maxFileFrame     = 512
)

// File answer statuses.
const (
	fileOK       = "ok"
	fileNotFound = "not-found"
	fileBusy     = "busy"
)

// Bounds of file transfers.
const (
	// maxFileServes is how many files a node serves to other nodes at
	// once; more are answered busy.
	maxFileServes = 16
	// fileStartTimeout bounds dialling, the handshake, the request and
	// the answer's head; fileIdleTimeout a transfer with no progress.
	fileStartTimeout = 5 * time.Second
	fileIdleTimeout  = 15 * time.Second
)

// Files is a node's store of meeting files (*files.Store).
type Files interface {
	// Get opens blob id of meeting (files.ErrNotFound when it is not here).
	Get(meeting, id string) (*os.File, int64, error)
	// List returns the blobs kept here, announced to a node that links.
	List() []files.Ref
	// OnStored registers a function called with each blob stored.
	OnStored(func(files.Ref))
	// Learn records that node keeps blob r; Locate tells where a blob is.
	Learn(node string, r files.Ref) error
	Locate(meeting, id string) (node string, size int64, ok bool)
}

// fileRequest asks for a blob.
type fileRequest struct {
	Meeting string `json:"meeting"`
	ID      string `json:"id"`
}

// fileBack opens a connection asked for by msgFileWant.
type fileBack struct {
	Token string `json:"token"`
}

// fileHead answers it.
type fileHead struct {
	Status string `json:"status"`
	Size   int64  `json:"size,omitempty"`
}

// appendFileFrame appends v as a file connection frame of type typ.
func appendFileFrame(b []byte, typ byte, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	if len(data) > maxFileFrame {
		return b, fmt.Errorf("file frame of %d bytes is too large", len(data))
	}
	b = appendHeader(b, typ, len(data))
	return append(b, data...), nil
}

// readFileFrame reads one frame of type typ from a file connection.
func readFileFrame(r io.Reader, typ byte) ([]byte, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	if h[0] != typ || n > maxFileFrame {
		return nil, fmt.Errorf("%w: type %d, %d bytes on a file connection", errFrame, h[0], n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // a header without its payload
		}
		return nil, err
	}
	return payload, nil
}

// parseFileRequest decodes and checks a request.
func parseFileRequest(payload []byte) (fileRequest, error) {
	var q fileRequest
	if err := json.Unmarshal(payload, &q); err != nil {
		return q, fmt.Errorf("%w: %v", errFrame, err)
	}
	if err := (files.Ref{Meeting: q.Meeting, ID: q.ID}).Valid(); err != nil {
		return q, fmt.Errorf("%w: %v", errFrame, err)
	}
	return q, nil
}

// parseFileBack decodes and checks the first frame of a connection back.
func parseFileBack(payload []byte) (string, error) {
	var b fileBack
	if err := json.Unmarshal(payload, &b); err != nil {
		return "", fmt.Errorf("%w: %v", errFrame, err)
	}
	if !validToken(b.Token) {
		return "", fmt.Errorf("%w: malformed token of a connection back", errFrame)
	}
	return b.Token, nil
}

// validToken: 32 lower-case hex digits.
func validToken(t string) bool {
	if len(t) != 32 {
		return false
	}
	for _, c := range t {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// parseFileHead decodes and checks an answer's head.
func parseFileHead(payload []byte) (fileHead, error) {
	var h fileHead
	if err := json.Unmarshal(payload, &h); err != nil {
		return h, fmt.Errorf("%w: %v", errFrame, err)
	}
	switch {
	case h.Status == fileOK && h.Size >= 0:
	case h.Status == fileNotFound, h.Status == fileBusy:
	default:
		return h, fmt.Errorf("%w: file answer %q of %d bytes", errFrame, h.Status, h.Size)
	}
	return h, nil
}

// serverTLS is the listener's configuration: the node-to-node policy,
// answering the file protocols to a client that offers one.
func serverTLS(base *tls.Config) *tls.Config {
	var once sync.Once
	var withALPN *tls.Config
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := base.GetConfigForClient(h)
			if err != nil || c == nil || !slices.Contains(h.SupportedProtos, alpnFiles) && !slices.Contains(h.SupportedProtos, alpnFilesBack) {
				return c, err
			}
			// nodeca's policy is one configuration for every client.
			once.Do(func() {
				withALPN = c.Clone()
				withALPN.NextProtos = []string{alpnFiles, alpnFilesBack}
			})
			return withALPN, nil
		},
	}
}

// announceFile tells every linked node that this node keeps r.
func (m *Mesh) announceFile(r files.Ref) {
	m.mu.Lock()
	links := make([]*link, 0, len(m.links))
	for _, l := range m.links {
		links = append(links, l)
	}
	m.mu.Unlock()
	for _, l := range links {
		l.sendControl(&control{T: msgFile, Meeting: r.Meeting, File: r.ID, Size: r.Size})
	}
}

// announceFilesTo tells a node that just linked every file kept here.
func (m *Mesh) announceFilesTo(l *link) {
	if m.cfg.Files == nil {
		return
	}
	for _, r := range m.cfg.Files.List() {
		l.sendControl(&control{T: msgFile, Meeting: r.Meeting, File: r.ID, Size: r.Size})
	}
}

// learnFile records another node's announcement.
func (l *link) learnFile(c *control) error {
	fs := l.mesh.cfg.Files
	if fs == nil {
		return nil
	}
	r := files.Ref{Meeting: c.Meeting, ID: c.File, Size: c.Size}
	if err := r.Valid(); err != nil {
		return fmt.Errorf("file announcement: %w", err)
	}
	if err := fs.Learn(l.peer, r); err != nil {
		l.mesh.log.Warn("cluster: a node's file announcement not recorded", "node", l.peer, "err", err)
	}
	return nil
}

// FetchFile opens blob id of meeting kept by another node, for a member
// of the meeting on this node, and returns it with its size. It answers
// files.ErrNotFound when no node announced it or the node keeping it no
// longer has it, files.ErrTooLarge when it is larger than max,
// files.ErrUnreachable when the node keeping it cannot be reached (down,
// link down, or it does not answer within fileStartTimeout),
// files.ErrBusy when that node serves as many files as it may. The
// reader fails when the transfer stalls for fileIdleTimeout or ends
// early.
func (m *Mesh) FetchFile(ctx context.Context, meeting, id string, max int64) (io.ReadCloser, int64, error) {
	fs := m.cfg.Files
	if fs == nil {
		return nil, 0, files.ErrNotFound
	}
	node, size, ok := fs.Locate(meeting, id)
	if !ok {
		return nil, 0, files.ErrNotFound
	}
	if size > max {
		return nil, 0, files.ErrTooLarge
	}
	m.mu.Lock()
	l := m.links[node]
	addr := m.addrs[node] // heard on the bus
	if l != nil && addr == "" {
		addr = l.relay // or told by the node in its hello
	}
	m.mu.Unlock()
	if l == nil {
		return nil, 0, fmt.Errorf("%w: no link to node %s", files.ErrUnreachable, node)
	}
	var c *tls.Conn
	var err error
	if addr != "" {
		c, err = m.dialFiles(ctx, node, addr, alpnFiles)
	} else {
		c, err = m.askBack(ctx, l)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: node %s: %v", files.ErrUnreachable, node, err)
	}
	h, err := requestFile(c, meeting, id)
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("%w: node %s: %v", files.ErrUnreachable, node, err)
	}
	switch {
	case h.Status == fileNotFound:
		c.Close()
		return nil, 0, files.ErrNotFound
	case h.Status == fileBusy:
		c.Close()
		return nil, 0, files.ErrBusy
	case h.Size > max:
		c.Close()
		return nil, 0, files.ErrTooLarge
	}
	return &fileReader{c: c, left: h.Size}, h.Size, nil
}

// dialFiles opens a file connection (protocol alpn) to node at addr.
func (m *Mesh) dialFiles(ctx context.Context, node, addr, alpn string) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, m.fileStart)
	defer cancel()
	host, _, _ := net.SplitHostPort(addr)
	cfg := nodeca.ClientConfig(m.cfg.Cert, m.cfg.Trust, host)
	cfg.NextProtos = []string{alpn}
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := nc.(*tls.Conn)
	peer, _, err := peerIdentity(c)
	switch {
	case err != nil:
	case peer != node:
		err = fmt.Errorf("the node at %s is %q", addr, peer)
	case c.ConnectionState().NegotiatedProtocol != alpn:
		err = errors.New("it does not exchange files with other nodes")
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Now().Add(m.fileStart))
	return c, nil
}

// askBack asks node l.peer, which has no listener, to connect back to
// this one for a file, and waits for the connection.
func (m *Mesh) askBack(ctx context.Context, l *link) (*tls.Conn, error) {
	if m.ln == nil {
		return nil, errors.New("neither node has a node-to-node listener")
	}
	token := randomToken()
	ch := make(chan *tls.Conn, 1)
	m.mu.Lock()
	m.backs[token] = fileWait{node: l.peer, ch: ch}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.backs, token)
		m.mu.Unlock()
		select {
		case c := <-ch: // arrived as the wait ended
			c.Close()
		default:
		}
	}()
	l.sendControl(&control{T: msgFileWant, Token: token})
	t := time.NewTimer(m.fileStart)
	defer t.Stop()
	select {
	case c := <-ch:
		c.SetDeadline(time.Now().Add(m.fileStart))
		return c, nil
	case <-t.C:
		return nil, errors.New("it did not connect back for the file")
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.done:
		return nil, errors.New("the link closed")
	}
}

// fileWait is a connection back this node waits for.
type fileWait struct {
	node string
	ch   chan *tls.Conn
}

// takeBack hands a connection back from node peer to the fetch that
// asked for it.
func (m *Mesh) takeBack(peer string, c *tls.Conn) {
	c.SetDeadline(time.Now().Add(m.fileStart))
	payload, err := readFileFrame(c, frameFileBack)
	var token string
	if err == nil {
		token, err = parseFileBack(payload)
	}
	m.mu.Lock()
	w, ok := m.backs[token]
	m.mu.Unlock()
	if err == nil && (!ok || w.node != peer) {
		err = errors.New("a connection back nobody asked that node for")
	}
	if err != nil {
		m.log.Warn("cluster: a node's file connection refused", "node", peer, "err", err)
		c.Close()
		return
	}
	select {
	case w.ch <- c:
	default:
		c.Close() // a second connection for one token
	}
}

// connectBack answers msgFileWant: it connects to node l.peer's listener
// and serves it the file it asks for there.
func (m *Mesh) connectBack(l *link, token string) {
	m.mu.Lock()
	addr := m.addrs[l.peer]
	if addr == "" {
		addr = l.relay
	}
	m.mu.Unlock()
	if addr == "" {
		m.log.Warn("cluster: a node wants a file but has no node-to-node listener", "node", l.peer)
		return
	}
	select {
	case m.fileBacks <- struct{}{}:
		defer func() { <-m.fileBacks }()
	default:
		m.log.Warn("cluster: too many file connections back to other nodes; one refused", "node", l.peer)
		return
	}
	c, err := m.dialFiles(m.ctx, l.peer, addr, alpnFilesBack)
	if err == nil {
		var b []byte
		if b, err = appendFileFrame(nil, frameFileBack, fileBack{Token: token}); err == nil {
			_, err = c.Write(b)
		}
		if err != nil {
			c.Close()
		}
	}
	if err != nil {
		m.log.Warn("cluster: cannot connect back to a node for a file", "node", l.peer, "err", err)
		return
	}
	m.serveFile(l.peer, c)
}

func randomToken() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b)
}

// requestFile sends the request and reads the answer's head; the
// connection's deadline bounds both.
func requestFile(c *tls.Conn, meeting, id string) (fileHead, error) {
	req, err := appendFileFrame(nil, frameFileRequest, fileRequest{Meeting: meeting, ID: id})
	if err != nil {
		return fileHead{}, err
	}
	if _, err := c.Write(req); err != nil {
		return fileHead{}, err
	}
	payload, err := readFileFrame(c, frameFileHead)
	if err != nil {
		return fileHead{}, err
	}
	return parseFileHead(payload)
}

// fileReader reads the body of an answer: exactly left bytes, each read
// within fileIdleTimeout.
type fileReader struct {
	c    *tls.Conn
	left int64
}

func (r *fileReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	r.c.SetReadDeadline(time.Now().Add(fileIdleTimeout))
	n, err := r.c.Read(p)
	r.left -= int64(n)
	switch {
	case r.left == 0:
		return n, nil
	case errors.Is(err, io.EOF):
		return n, fmt.Errorf("the node keeping the file closed the transfer with %d bytes left: %w", r.left, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (r *fileReader) Close() error { return r.c.Close() }

// serveFile answers one file connection from node peer.
func (m *Mesh) serveFile(peer string, c *tls.Conn) {
	defer c.Close()
	defer context.AfterFunc(m.ctx, func() { c.Close() })()
	c.SetDeadline(time.Now().Add(m.fileStart))
	payload, err := readFileFrame(c, frameFileRequest)
	var q fileRequest
	if err == nil {
		q, err = parseFileRequest(payload)
	}
	if err != nil {
		m.log.Warn("cluster: a node's file request refused", "node", peer, "err", err)
		return
	}
	answer := func(h fileHead) bool {
		b, _ := appendFileFrame(nil, frameFileHead, h)
		_, err := c.Write(b)
		return err == nil
	}
	select {
	case m.fileServes <- struct{}{}:
		defer func() { <-m.fileServes }()
	default:
		answer(fileHead{Status: fileBusy})
		return
	}
	if m.cfg.Files == nil || m.cfg.Rooms == nil || !m.cfg.Rooms.HasMembers(peer, q.Meeting) {
		// Only the nodes of the meeting's members get its files.
		m.log.Warn("cluster: a node asked for a file of a meeting it has no members in", "node", peer)
		answer(fileHead{Status: fileNotFound})
		return
	}
	f, size, err := m.cfg.Files.Get(q.Meeting, q.ID)
	if err != nil {
		answer(fileHead{Status: fileNotFound})
		return
	}
	defer f.Close()
	if !answer(fileHead{Status: fileOK, Size: size}) {
		return
	}
	c.SetDeadline(time.Time{})
	n, err := io.Copy(idleWriter{c}, f)
	if err == nil && n != size {
		err = fmt.Errorf("sent %d of %d bytes", n, size)
	}
	if err != nil {
		m.log.Warn("cluster: a file transfer to a node failed", "node", peer, "err", err)
	}
}

// idleWriter fails a write that makes no progress for fileIdleTimeout.
type idleWriter struct{ c *tls.Conn }

func (w idleWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(fileIdleTimeout))
	return w.c.Write(p)
}
