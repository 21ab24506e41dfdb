package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"conclave/internal/backup"
	"conclave/internal/config"
	"conclave/internal/secrets"
	"conclave/internal/selfcheck"
	"conclave/internal/store"
	"conclave/internal/version"
)

// SnapshotName is the name of st's database in a backup: a copy of the
// SQLite file, or pg_dump's archive of the PostgreSQL database.
func SnapshotName(st interface{ Engine() string }) string {
	if st.Engine() == "postgres" {
		return backup.PostgresFile
	}
	return backup.DatabaseFile
}

// RestoreDataDir restores a backup onto cfg.DataDir, which must not exist
// or be empty: the files are put in place only once the whole backup has
// opened with passphrase (a wrong one changes nothing), the keys are
// sealed under cfg's master key when one is configured, and the restored
// configuration is signed for the self-check (the backup does not carry
// the source node's manifest, whose key sealed other ciphertexts). The
// database goes where cfg says: a backup of an SQLite node into the data
// directory, a backup of a PostgreSQL node into cfg.Database, which must
// be an empty database (pg_restore, in one transaction); a backup of one
// kind does not restore onto the other, and such a restore leaves
// nothing behind. This is `conclave backup restore`.
func RestoreDataDir(r io.Reader, passphrase string, cfg config.Config) (res Restored, err error) {
	res.Header, err = backup.Restore(r, passphrase, cfg.DataDir, nil)
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			// The directory was new or empty: take the restore back.
			if ents, rerr := os.ReadDir(cfg.DataDir); rerr == nil {
				for _, e := range ents {
					os.RemoveAll(filepath.Join(cfg.DataDir, e.Name()))
				}
			}
		}
	}()
	if res.Database, err = restoreDatabase(cfg); err != nil {
		return res, err
	}
	box, err := secrets.Open(cfg.DataDir, secrets.Source{KeyFile: cfg.Secrets.KeyFile, Key: cfg.Secrets.Key, Passphrase: cfg.Secrets.Passphrase})
	if err != nil {
		return res, err
	}
	if _, err := box.SealDir(cfg.DataDir); err != nil {
		return res, err
	}
	exe, _ := os.Executable()
	return res, selfcheck.Reset(selfcheck.Config{DataDir: cfg.DataDir, Box: box, Binary: exe, Version: version.Get().Version})
}

// Restored is what RestoreDataDir restored: the backup's header, and a
// sentence saying where the database went.
type Restored struct {
	backup.Header
	Database string
}

// restoreDatabase puts the restored database where cfg keeps it and
// says where.
func restoreDatabase(cfg config.Config) (string, error) {
	has := func(name string) bool {
		_, err := os.Stat(filepath.Join(cfg.DataDir, name))
		return err == nil
	}
	sqlite, pg := has(backup.DatabaseFile), has(backup.PostgresFile)
	switch {
	case cfg.Database == "" && pg:
		return "", errors.New("this backup was made on a node whose store is PostgreSQL: restore it with -database postgres://... naming a new, empty database")
	case cfg.Database != "" && sqlite:
		return "", errors.New("this backup was made on a node whose store is SQLite: restore it without -database (the database is the data directory's conclave.db)")
	case cfg.Database == "" && sqlite:
		return "The database is the data directory's conclave.db.", nil
	case cfg.Database == "":
		return "The backup holds no database.", nil
	case !pg:
		return "The backup holds no database (a PostgreSQL node's backup from before Conclave dumped it): restore the database from your PostgreSQL backups; it was left as it is.", nil
	}
	if err := cfg.ValidateDatabase(); err != nil {
		return "", err
	}
	dump := filepath.Join(cfg.DataDir, backup.PostgresFile)
	if err := store.RestorePostgres(context.Background(), cfg.Database, dump); err != nil {
		return "", err
	}
	// The dump holds the whole database in the clear: it has served.
	if err := os.Remove(dump); err != nil {
		return "", fmt.Errorf("remove %s after loading it: %w", dump, err)
	}
	return "The database was loaded into the PostgreSQL database of -database.", nil
}
