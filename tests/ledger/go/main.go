// Command gointerop checks the Python ledger's signed checkpoints and Merkle proofs with Go's
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog, unchanged.
//
// It reads one JSON request on stdin and writes one JSON report on stdout; every disagreement is
// listed in "failures". The exit status is 0 whenever the request could be read, so the caller
// sees all failures at once.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// NoteCase is a signed checkpoint and what it must open to (when WantOK).
type NoteCase struct {
	Label  string    `json:"label"`
	VKey   string    `json:"vkey"`
	Msg    []byte    `json:"msg"`
	Origin string    `json:"origin"`
	Size   int64     `json:"size"`
	Root   tlog.Hash `json:"root"`
	WantOK bool      `json:"want_ok"`
}

// SignCase asks Go to sign Text with SKey; the result must equal Want byte for byte.
type SignCase struct {
	Label string `json:"label"`
	SKey  string `json:"skey"`
	Text  string `json:"text"`
	Want  []byte `json:"want"`
}

// RecordCase is an inclusion proof of record N in the tree of size T.
type RecordCase struct {
	T      int64       `json:"t"`
	N      int64       `json:"n"`
	Proof  []tlog.Hash `json:"proof"`
	WantOK bool        `json:"want_ok"`
}

// TreeCase is a consistency proof that the tree of size N is a prefix of the tree of size T.
type TreeCase struct {
	T      int64       `json:"t"`
	N      int64       `json:"n"`
	Proof  []tlog.Hash `json:"proof"`
	WantOK bool        `json:"want_ok"`
}

// Request is the whole input. Roots[i] is the Python root of the tree of size i (Roots[0] unused).
type Request struct {
	Notes   []NoteCase   `json:"notes"`
	Sign    []SignCase   `json:"sign"`
	Leaves  [][]byte     `json:"leaves"`
	Roots   []tlog.Hash  `json:"roots"`
	Records []RecordCase `json:"records"`
	Trees   []TreeCase   `json:"trees"`
}

// Report is the whole output.
type Report struct {
	Failures       []string `json:"failures"`
	NotesChecked   int      `json:"notes_checked"`
	SignChecked    int      `json:"sign_checked"`
	RootsChecked   int      `json:"roots_checked"`
	RecordsChecked int      `json:"records_checked"`
	TreesChecked   int      `json:"trees_checked"`
	ProofsEqual    int      `json:"proofs_equal"`
}

func (r *Report) fail(format string, args ...interface{}) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

func main() {
	var req Request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "gointerop: reading request: %v\n", err)
		os.Exit(2)
	}
	rep := &Report{Failures: []string{}}
	checkNotes(&req, rep)
	checkSigning(&req, rep)
	reader := buildTree(&req, rep)
	if reader != nil {
		checkRecords(&req, rep, reader)
		checkTrees(&req, rep, reader)
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fmt.Fprintf(os.Stderr, "gointerop: writing report: %v\n", err)
		os.Exit(2)
	}
}

func checkNotes(req *Request, rep *Report) {
	for _, c := range req.Notes {
		rep.NotesChecked++
		err := openCheckpoint(c)
		switch {
		case c.WantOK && err != nil:
			rep.fail("note %s: %v", c.Label, err)
		case !c.WantOK && err == nil:
			rep.fail("note %s: opened, but it must be refused", c.Label)
		}
	}
}

func openCheckpoint(c NoteCase) error {
	v, err := note.NewVerifier(c.VKey)
	if err != nil {
		return fmt.Errorf("NewVerifier(%q): %v", c.VKey, err)
	}
	n, err := note.Open(c.Msg, note.VerifierList(v))
	if err != nil {
		return fmt.Errorf("Open: %v", err)
	}
	if len(n.Sigs) != 1 || n.Sigs[0].Name != v.Name() || n.Sigs[0].Hash != v.KeyHash() {
		return fmt.Errorf("Open: verified signatures %+v, want one by %s+%08x", n.Sigs, v.Name(), v.KeyHash())
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		return fmt.Errorf("checkpoint text has %d lines", len(lines))
	}
	if lines[0] != c.Origin {
		return fmt.Errorf("origin %q, want %q", lines[0], c.Origin)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size != c.Size || strconv.FormatInt(size, 10) != lines[1] {
		return fmt.Errorf("size line %q, want %d", lines[1], c.Size)
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil || root != c.Root {
		return fmt.Errorf("root line %q, want %s (%v)", lines[2], c.Root, err)
	}
	return nil
}

func checkSigning(req *Request, rep *Report) {
	for _, c := range req.Sign {
		rep.SignChecked++
		s, err := note.NewSigner(c.SKey)
		if err != nil {
			rep.fail("sign %s: NewSigner: %v", c.Label, err)
			continue
		}
		msg, err := note.Sign(&note.Note{Text: c.Text}, s)
		if err != nil {
			rep.fail("sign %s: Sign: %v", c.Label, err)
			continue
		}
		if string(msg) != string(c.Want) {
			rep.fail("sign %s: Go signed %q, Python signed %q", c.Label, msg, c.Want)
		}
	}
}

// buildTree stores the leaves with tlog's own storage layout and checks every Python root.
func buildTree(req *Request, rep *Report) tlog.HashReader {
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if x < 0 || x >= int64(len(stored)) {
				return nil, fmt.Errorf("no stored hash %d", x)
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, data := range req.Leaves {
		hashes, err := tlog.StoredHashes(int64(i), data, reader)
		if err != nil {
			rep.fail("tlog.StoredHashes(%d): %v", i, err)
			return nil
		}
		stored = append(stored, hashes...)
	}
	if len(req.Roots) != len(req.Leaves)+1 {
		rep.fail("request has %d roots for %d leaves", len(req.Roots), len(req.Leaves))
		return nil
	}
	for size := int64(1); size <= int64(len(req.Leaves)); size++ {
		rep.RootsChecked++
		th, err := tlog.TreeHash(size, reader)
		if err != nil {
			rep.fail("tlog.TreeHash(%d): %v", size, err)
		} else if th != req.Roots[size] {
			rep.fail("root of size %d: tlog %s, Python %s", size, th, req.Roots[size])
		}
	}
	return reader
}

func checkRecords(req *Request, rep *Report, reader tlog.HashReader) {
	for _, c := range req.Records {
		rep.RecordsChecked++
		if c.T < 1 || c.T >= int64(len(req.Roots)) || c.N < 0 || c.N >= int64(len(req.Leaves)) {
			rep.fail("record case t=%d n=%d out of range", c.T, c.N)
			continue
		}
		err := tlog.CheckRecord(c.Proof, c.T, req.Roots[c.T], c.N, tlog.RecordHash(req.Leaves[c.N]))
		if c.WantOK && err != nil {
			rep.fail("CheckRecord(t=%d, n=%d): %v", c.T, c.N, err)
		}
		if !c.WantOK && err == nil {
			rep.fail("CheckRecord(t=%d, n=%d) accepted a tampered proof", c.T, c.N)
		}
		if c.WantOK {
			p, err := tlog.ProveRecord(c.T, c.N, reader)
			if err != nil {
				rep.fail("ProveRecord(t=%d, n=%d): %v", c.T, c.N, err)
			} else if equalHashes(p, c.Proof) {
				rep.ProofsEqual++
			} else {
				rep.fail("inclusion proof t=%d n=%d: tlog %v, Python %v", c.T, c.N, p, c.Proof)
			}
		}
	}
}

func checkTrees(req *Request, rep *Report, reader tlog.HashReader) {
	for _, c := range req.Trees {
		rep.TreesChecked++
		if c.T < 1 || c.T >= int64(len(req.Roots)) || c.N < 1 || c.N >= int64(len(req.Roots)) {
			rep.fail("tree case t=%d n=%d out of range", c.T, c.N)
			continue
		}
		err := tlog.CheckTree(c.Proof, c.T, req.Roots[c.T], c.N, req.Roots[c.N])
		if c.WantOK && err != nil {
			rep.fail("CheckTree(t=%d, n=%d): %v", c.T, c.N, err)
		}
		if !c.WantOK && err == nil {
			rep.fail("CheckTree(t=%d, n=%d) accepted a tampered proof", c.T, c.N)
		}
		if c.WantOK {
			p, err := tlog.ProveTree(c.T, c.N, reader)
			if err != nil {
				rep.fail("ProveTree(t=%d, n=%d): %v", c.T, c.N, err)
			} else if equalHashes(p, c.Proof) {
				rep.ProofsEqual++
			} else {
				rep.fail("consistency proof t=%d n=%d: tlog %v, Python %v", c.T, c.N, p, c.Proof)
			}
		}
	}
}

func equalHashes(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
