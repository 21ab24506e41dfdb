package meeting

import (
	"encoding/base64"

	"conclave/internal/e2ee"
)

// Revoked devices (docs/e2ee.md, section 7): the server reads the device
// key of each announcement it relays, so that when the organisation
// revokes a device, its participants are sent away and it cannot announce
// itself again. Clients do not rely on this: they find the revocation in
// the log themselves.

// announcedDevice returns the device public key of an announce payload, or
// "" when it does not parse.
func announcedDevice(payload string) string {
	b, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return ""
	}
	a, err := e2ee.ParseAnnouncement(b)
	if err != nil {
		return ""
	}
	pub, err := e2ee.MarshalPublicKey(a.DevicePublicKey)
	if err != nil {
		return ""
	}
	return string(pub)
}

func (m *Manager) deviceRevoked(device string) bool {
	if device == "" {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.revoked[device]
}

// RevokeDevice sends away every participant whose announcement carries the
// device public key (65-byte point), with the reason "revoked", and refuses
// its later announcements. The nodes of the device's participants on other
// nodes are told to do the same (commandRevokeDevice). It returns how many
// participants it removed or had removed.
func (m *Manager) RevokeDevice(devicePublicKey []byte) int {
	n := m.revokeLocal(devicePublicKey)
	key := string(devicePublicKey)
	for _, r := range m.rooms() {
		r.mu.Lock()
		told := map[string]bool{}
		for _, x := range r.remote {
			if x.m.Announce == "" || announcedDevice(x.m.Announce) != key {
				continue
			}
			n++
			if !told[x.node] {
				told[x.node] = true
				r.sendToLocked(x.node, Event{Kind: EventCommand, Type: commandRevokeDevice,
					Payload: base64.StdEncoding.EncodeToString(devicePublicKey)})
			}
		}
		r.mu.Unlock()
	}
	return n
}

// commandRevokeDevice (EventCommand, Payload: the device public key in
// base64) asks a node to revoke a device on its own participants (the
// management node, which keeps the devices, revoked it).
const commandRevokeDevice = "revoke-device"

// revokedOnNode carries out commandRevokeDevice.
func (m *Manager) revokedOnNode(ev Event) {
	key, err := base64.StdEncoding.DecodeString(ev.Payload)
	if err != nil || len(key) != 65 {
		m.log.Warn("cluster: a device revocation without a device key; ignored")
		return
	}
	if n := m.revokeLocal(key); n > 0 {
		m.log.Info("cluster: participants of a revoked device removed", "participants", n)
	}
}

// revokeLocal is RevokeDevice on this node's participants only.
func (m *Manager) revokeLocal(devicePublicKey []byte) int {
	key := string(devicePublicKey)
	m.mu.Lock()
	if m.revoked == nil {
		m.revoked = map[string]bool{}
	}
	m.revoked[key] = true
	rooms := make([]*Room, 0, len(m.active))
	for _, r := range m.active {
		rooms = append(rooms, r)
	}
	m.mu.Unlock()
	n := 0
	for _, r := range rooms {
		for _, p := range r.everyone() {
			p.mu.Lock()
			match := p.device == key
			p.mu.Unlock()
			if match {
				m.log.Info("participant of a revoked device removed", "room", r.alias, "participant", p.id)
				p.leave("revoked")
				n++
			}
		}
	}
	return n
}
