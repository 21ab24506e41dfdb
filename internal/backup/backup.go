package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"conclave/internal/secrets"
)

// DatabaseFile is the database's name in the data directory; the backup
// holds a consistent snapshot of it instead of the live file.
const DatabaseFile = "conclave.db"

// PostgresFile is the name, in a backup of a node whose store is
// PostgreSQL, of the database's dump (pg_dump's custom format).
const PostgresFile = "conclave.pgdump"

// Excluded reports whether a path of the data directory (slash-separated,
// relative) stays out of backups, and is the one place that says so:
//   - files/: encrypted file blobs exchanged in meetings (deleted when the
//     meeting ends anyway);
//   - backups/ and restore-pending/: backups and a staged restore;
//   - selfcheck/: the manifest signs the restoring node's files (its keys
//     are sealed again under that node's master key), so the restore
//     signs a new one;
//   - the live database and its WAL and shared-memory files (the backup
//     takes a snapshot), and a PostgreSQL dump left by a restore;
//   - secrets.check and secrets.salt, which belong to the node's master
//     key (sealed keys are stored opened inside the encrypted backup);
//   - scratch files (".name.tmp...", "*.tmp").
func Excluded(rel string) bool {
	first, _, _ := strings.Cut(rel, "/")
	switch first {
	case "files", "backups", "restore-pending", "restore-pending.sig", "selfcheck", DatabaseFile, DatabaseFile + "-wal", DatabaseFile + "-shm",
		DatabaseFile + "-journal", PostgresFile, secrets.CheckFile, secrets.SaltFile:
		return true
	}
	base := path.Base(rel)
	return strings.HasSuffix(base, ".tmp") || (strings.HasPrefix(base, ".") && strings.Contains(base, ".tmp"))
}

// paxSealed marks a file that was sealed under the master key on disk.
const paxSealed = "CONCLAVE.sealed"

// Source describes what Create backs up.
type Source struct {
	// DataDir is the data directory.
	DataDir string
	// Box opens the files sealed under the master key; nil if none.
	Box *secrets.Box
	// Snapshot writes a consistent copy of the database to path (VACUUM
	// INTO, or pg_dump); nil backs up no database.
	Snapshot func(ctx context.Context, path string) error
	// SnapshotName is the snapshot's name in the backup: DatabaseFile
	// (the default) or PostgresFile.
	SnapshotName string
	// Version and Node go into the header.
	Version, Node string
	// Now dates the backup.
	Now time.Time
}

// Create writes an encrypted backup of src to w.
func Create(ctx context.Context, w io.Writer, passphrase string, src Source) (Header, error) {
	h := Header{Created: src.Now.UTC(), Version: src.Version, Node: src.Node}
	ew, err := newWriter(w, passphrase, h)
	if err != nil {
		return h, err
	}
	tw := tar.NewWriter(ew)
	if src.Snapshot != nil {
		tmp, err := os.MkdirTemp(src.DataDir, ".backup-snapshot-*.tmp")
		if err != nil {
			return h, fmt.Errorf("backup: %w", err)
		}
		defer os.RemoveAll(tmp)
		name := src.SnapshotName
		if name == "" {
			name = DatabaseFile
		}
		snap := filepath.Join(tmp, name)
		if err := src.Snapshot(ctx, snap); err != nil {
			return h, fmt.Errorf("backup: snapshot of the database: %w", err)
		}
		data, err := os.ReadFile(snap)
		if err != nil {
			return h, fmt.Errorf("backup: %w", err)
		}
		if err := addFile(tw, name, 0o600, src.Now, data, false); err != nil {
			return h, err
		}
	}
	err = filepath.WalkDir(src.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src.DataDir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if Excluded(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: int64(info.Mode().Perm()), ModTime: info.ModTime()})
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sealed := secrets.Sealed(data)
			if sealed {
				if data, err = src.Box.Open(p, data); err != nil {
					return err
				}
			}
			return addFile(tw, rel, info.Mode().Perm(), info.ModTime(), data, sealed)
		default:
			return nil // sockets, links: nothing to keep
		}
	})
	if err != nil {
		return h, fmt.Errorf("backup: %w", err)
	}
	if err := tw.Close(); err != nil {
		return h, fmt.Errorf("backup: %w", err)
	}
	if err := ew.Close(); err != nil {
		return h, fmt.Errorf("backup: %w", err)
	}
	return h, nil
}

func addFile(tw *tar.Writer, name string, mode fs.FileMode, mod time.Time, data []byte, sealed bool) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(mode), Size: int64(len(data)), ModTime: mod, Format: tar.FormatPAX}
	if sealed {
		hdr.PAXRecords = map[string]string{paxSealed: "1"}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// Inspect checks that a backup opens with passphrase, reading it whole,
// and returns its header and the names it holds. It writes nothing.
func Inspect(r io.Reader, passphrase string) (Header, []string, error) {
	dr, h, err := newReader(r, passphrase)
	if err != nil {
		return h, nil, err
	}
	tr := tar.NewReader(dr)
	var names []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return h, nil, openError(err)
		}
		names = append(names, hdr.Name)
	}
	if _, err := io.Copy(io.Discard, dr); err != nil {
		return h, nil, openError(err)
	}
	return h, names, nil
}

func openError(err error) error {
	if errors.Is(err, ErrPassphrase) {
		return err
	}
	return fmt.Errorf("%w (%v)", ErrPassphrase, err)
}

// Restore decrypts a backup into target, which must not exist or be an
// empty directory. Files sealed on the source node are sealed again with
// box (written clear when box is nil). Everything is first written into
// a scratch directory beside target and moved into place only once the
// whole backup has opened: a wrong passphrase, or an altered or truncated
// file, changes nothing.
func Restore(r io.Reader, passphrase, target string, box *secrets.Box) (Header, error) {
	if ents, err := os.ReadDir(target); err == nil && len(ents) > 0 {
		return Header{}, fmt.Errorf("restore into %s: the directory is not empty; restore onto a new data directory (or move this one away first)", target)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Header{}, fmt.Errorf("restore: %w", err)
	}
	dr, h, err := newReader(r, passphrase)
	if err != nil {
		return h, err
	}
	parent := filepath.Dir(filepath.Clean(target))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return h, fmt.Errorf("restore: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(target)+".restoring-*.tmp")
	if err != nil {
		return h, fmt.Errorf("restore: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	tr := tar.NewReader(dr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return h, openError(err)
		}
		name := path.Clean(hdr.Name)
		if !fs.ValidPath(name) || name == "." {
			return h, fmt.Errorf("restore: the backup holds an invalid name %q", hdr.Name)
		}
		dst := filepath.Join(tmp, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return h, fmt.Errorf("restore: %w", err)
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				return h, openError(err)
			}
			if hdr.PAXRecords[paxSealed] == "1" {
				data = box.Seal(dst, data)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return h, fmt.Errorf("restore: %w", err)
			}
			if err := os.WriteFile(dst, data, fs.FileMode(hdr.Mode).Perm()&0o700|0o600); err != nil {
				return h, fmt.Errorf("restore: %w", err)
			}
		default:
			return h, fmt.Errorf("restore: the backup holds %q of an unexpected type", hdr.Name)
		}
	}
	if _, err := io.Copy(io.Discard, dr); err != nil {
		return h, openError(err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return h, err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return h, fmt.Errorf("restore: %w", err)
	}
	if err := os.Rename(tmp, target); err != nil {
		return h, fmt.Errorf("restore: %w", err)
	}
	ok = true
	return h, nil
}
