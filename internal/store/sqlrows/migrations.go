package sqlrows

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one numbered schema migration: a file NNNN_name.sql of a driver's
// embedded migrations.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Pending returns the migrations of fsys (the files matching glob) newer than current,
// in order. Each driver applies them its own way, each in a transaction with the record
// of its version.
func Pending(fsys fs.FS, glob string, current int) ([]Migration, error) {
	names, err := fs.Glob(fsys, glob)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Migration
	for _, name := range names {
		base := path.Base(name)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("migration %s: bad name", base)
		}
		if v <= current {
			continue
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: base, SQL: string(body)})
	}
	return out, nil
}
