package audit

import "golang.org/x/sys/unix"

// statFS reports the free (for unprivileged users) and total bytes of the
// file system holding path.
func statFS(path string) (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}
