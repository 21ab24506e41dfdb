package authn

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/internal/secrets"
	"conclave/internal/store"
)

// A directory password and a client secret stored in the clear by an
// older Conclave are sealed at the next start, and still read back.
func TestSettingsSealStoredSecrets(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Now()
	if err := st.SetSetting(ctx, keyLDAP, `{"enabled":true,"url":"ldap://dir.example.org","bindDn":"cn=reader","bindPassword":"reader-Pw-1","userBase":"ou=people","userFilter":"(uid={username})","use":"both"}`, now); err != nil {
		t.Fatal(err)
	}
	if err := st.SetSetting(ctx, keyOIDC, `{"enabled":false,"clientSecret":"old-client-secret"}`, now); err != nil {
		t.Fatal(err)
	}
	fields, err := secrets.OpenFields(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSettings(st, fields, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for key, secret := range map[string]string{keyLDAP: "reader-Pw-1", keyOIDC: "old-client-secret"} {
		if raw, _ := st.Setting(ctx, key); strings.Contains(raw, secret) || !strings.Contains(raw, "conclave-sealed-1:") {
			t.Errorf("%s after the start: %s", key, raw)
		}
	}
	if l, _, err := s.LDAP(ctx); err != nil || l.BindPassword != "reader-Pw-1" || l.URL != "ldap://dir.example.org" {
		t.Fatalf("LDAP = %+v, %v", l, err)
	}
	if o, _, err := s.OIDC(ctx); err != nil || o.ClientSecret != "old-client-secret" {
		t.Fatalf("OIDC = %+v, %v", o, err)
	}
}
