package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
)

// requestFile is the name the control plane gives the documents of an apply in
// its errors (admin.RequestFile; a test keeps the two equal). portctl imports no
// server package, to stay a small binary.
const requestFile = "request"

// source is one input file's place in the documents sent.
type source struct {
	name      string
	firstLine int // 1-based line of the joined documents where the file starts
	lines     int
}

// readSources reads every -f argument (a file, a directory's *.yaml and *.yml
// files in name order, or "-" for standard input) and joins them into one
// multi-document stream, so that one apply checks and writes them together.
func readSources(paths []string, stdin io.Reader) ([]byte, []source, error) {
	var files []string
	for _, p := range paths {
		if p == "-" {
			files = append(files, p)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, nil, err
		}
		var names []string
		for _, e := range ents {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				names = append(names, filepath.Join(p, e.Name()))
			}
		}
		if len(names) == 0 {
			return nil, nil, fmt.Errorf("%s: no .yaml or .yml files", p)
		}
		sort.Strings(names)
		files = append(files, names...)
	}
	var joined bytes.Buffer
	var sources []source
	line := 1
	for _, f := range files {
		var data []byte
		var err error
		name := f
		if f == "-" {
			name = "<stdin>"
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return nil, nil, err
		}
		if joined.Len() > 0 {
			joined.WriteString("---\n")
			line++
		}
		n := bytes.Count(data, []byte("\n"))
		joined.Write(data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			joined.WriteByte('\n')
			n++
		}
		sources = append(sources, source{name: name, firstLine: line, lines: n})
		line += n
	}
	return joined.Bytes(), sources, nil
}

var requestPlace = regexp.MustCompile(regexp.QuoteMeta(requestFile) + `:(\d+)`)

// placeInFiles rewrites the control plane's "request:LINE" places in msg into the
// input files' own "file.yaml:LINE".
func placeInFiles(msg string, sources []source) string {
	return requestPlace.ReplaceAllStringFunc(msg, func(m string) string {
		n, err := strconv.Atoi(m[len(requestFile)+1:])
		if err != nil {
			return m
		}
		for _, s := range sources {
			if n >= s.firstLine && n < s.firstLine+s.lines {
				return s.name + ":" + strconv.Itoa(n-s.firstLine+1)
			}
		}
		return m
	})
}
