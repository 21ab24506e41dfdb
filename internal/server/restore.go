package server

import (
	"io"
	"os"

	"conclave/internal/backup"
	"conclave/internal/config"
	"conclave/internal/secrets"
	"conclave/internal/selfcheck"
	"conclave/internal/version"
)

// RestoreDataDir restores a backup onto cfg.DataDir, which must not exist
// or be empty: the files are put in place only once the whole backup has
// opened with passphrase (a wrong one changes nothing), the keys are
// sealed under cfg's master key when one is configured, and the restored
// configuration is signed for the self-check (the backup does not carry
// the source node's manifest, whose key sealed other ciphertexts). This
// is `conclave backup restore`.
func RestoreDataDir(r io.Reader, passphrase string, cfg config.Config) (backup.Header, error) {
	h, err := backup.Restore(r, passphrase, cfg.DataDir, nil)
	if err != nil {
		return h, err
	}
	box, err := secrets.Open(cfg.DataDir, secrets.Source{KeyFile: cfg.Secrets.KeyFile, Key: cfg.Secrets.Key, Passphrase: cfg.Secrets.Passphrase})
	if err != nil {
		return h, err
	}
	if _, err := box.SealDir(cfg.DataDir); err != nil {
		return h, err
	}
	exe, _ := os.Executable()
	return h, selfcheck.Reset(selfcheck.Config{DataDir: cfg.DataDir, Box: box, Binary: exe, Version: version.Get().Version})
}
