package cpclient

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LKGFile is the name of the last-known-good config file under Options.DataDir.
const LKGFile = "controlplane-lkg.yaml"

// lkgHeader starts the file; the version follows it on the same line. The file is
// otherwise plain YAML documents, so an operator can read it, or pass it to -config
// in an emergency.
const lkgHeader = "# portcullis last-known-good config from the control plane, version "

// saveLKG writes version and docs to dir atomically: a reader (this proxy after a
// crash, at any instant) sees the old file or the new one, never a mix.
func saveLKG(dir, version string, docs []byte) error {
	if strings.ContainsAny(version, "\r\n") {
		return fmt.Errorf("version %q has a line break", version)
	}
	tmp, err := os.CreateTemp(dir, LKGFile+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	w := bufio.NewWriter(tmp)
	w.WriteString(lkgHeader + version + "\n")
	w.Write(docs)
	err = errors.Join(w.Flush(), tmp.Sync(), tmp.Close())
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, LKGFile)); err != nil {
		return err
	}
	// The rename is durable once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// loadLKG reads what saveLKG wrote. It returns os.ErrNotExist (wrapped) when there
// is no file.
func loadLKG(dir string) (version string, docs []byte, err error) {
	b, err := os.ReadFile(filepath.Join(dir, LKGFile))
	if err != nil {
		return "", nil, err
	}
	first, rest, ok := bytes.Cut(b, []byte("\n"))
	v, found := strings.CutPrefix(string(first), lkgHeader)
	if !ok || !found || v == "" {
		return "", nil, fmt.Errorf("%s: the first line is not the header this proxy writes", filepath.Join(dir, LKGFile))
	}
	return v, rest, nil
}
