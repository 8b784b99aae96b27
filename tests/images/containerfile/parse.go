// Package containerfile reads the subset of the Containerfile (Dockerfile) language that
// gitwarden's images are written in. It is strict on purpose: the local builder
// (tests/images/build) executes what this package returns, so an instruction or flag it
// silently skipped would make the local image differ from what `podman build` makes from
// the same file. Anything outside the subset is an error naming the file and line.
package containerfile

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// File is a parsed Containerfile: its stages in order; the last one is the image.
type File struct {
	Path   string
	Stages []*Stage
}

// Stage is one FROM and the instructions under it.
type Stage struct {
	Name         string // the AS name, or "" when the stage has none
	From         string // the base image reference, or "scratch"
	Line         int
	Instructions []Instruction
}

// Instruction is one instruction after FROM, with its arguments already split the way
// the builder needs them.
type Instruction struct {
	Line int
	// Cmd is the upper-case keyword: RUN, COPY, WORKDIR, ENV, USER, ENTRYPOINT, CMD,
	// EXPOSE or LABEL.
	Cmd string
	// Args: for RUN, ENTRYPOINT and CMD the argv (shell form becomes /bin/sh -c TEXT, as
	// in Docker); for COPY the sources then the destination; for WORKDIR, USER and
	// EXPOSE the words.
	Args []string
	// Shell is true when RUN, ENTRYPOINT or CMD was written in shell form.
	Shell bool
	// From is COPY's --from stage name ("" copies from the build context).
	From string
	// Pairs holds ENV's and LABEL's key/value pairs in order.
	Pairs [][2]string
}

// Final is the stage that becomes the image.
func (f *File) Final() *Stage { return f.Stages[len(f.Stages)-1] }

// Stage returns the stage named name, or nil.
func (f *File) Stage(name string) *Stage {
	for _, s := range f.Stages {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// ParseFile reads and parses the Containerfile at path.
func ParseFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, string(data))
}

// Parse parses Containerfile text; path is only used in errors.
func Parse(path, text string) (*File, error) {
	f := &File{Path: path}
	lines, err := logicalLines(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, l := range lines {
		fail := func(format string, a ...any) error {
			return fmt.Errorf("%s:%d: %s", path, l.number, fmt.Sprintf(format, a...))
		}
		text := strings.TrimSpace(l.text)
		keyword, rest := text, ""
		if i := strings.IndexAny(text, " \t"); i >= 0 {
			keyword, rest = text[:i], strings.TrimSpace(text[i+1:])
		}
		keyword = strings.ToUpper(keyword)
		if keyword == "FROM" {
			stage, err := parseFrom(rest)
			if err != nil {
				return nil, fail("%v", err)
			}
			stage.Line = l.number
			if stage.Name != "" && f.Stage(stage.Name) != nil {
				return nil, fail("stage %q is defined twice", stage.Name)
			}
			f.Stages = append(f.Stages, stage)
			continue
		}
		if len(f.Stages) == 0 {
			return nil, fail("%s before the first FROM", keyword)
		}
		in, err := parseInstruction(keyword, rest)
		if err != nil {
			return nil, fail("%v", err)
		}
		in.Line = l.number
		if in.From != "" && f.Stage(in.From) == nil {
			return nil, fail("COPY --from=%s names no earlier stage", in.From)
		}
		stage := f.Stages[len(f.Stages)-1]
		stage.Instructions = append(stage.Instructions, in)
	}
	if len(f.Stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM instruction", path)
	}
	return f, nil
}

type logicalLine struct {
	number int // the line the instruction starts on
	text   string
}

// logicalLines joins backslash continuations and drops comments and blank lines, as
// Docker does (a comment line inside a continuation is dropped too).
func logicalLines(text string) ([]logicalLine, error) {
	var out []logicalLine
	var current strings.Builder
	start := 0
	scanner := bufio.NewScanner(strings.NewReader(text))
	scanner.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	n := 0
	for scanner.Scan() {
		n++
		line := scanner.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			// Parser directives change how the rest is read; none is supported.
			lower := strings.ToLower(strings.ReplaceAll(trimmed, " ", ""))
			if current.Len() == 0 && len(out) == 0 && strings.HasPrefix(lower, "#escape=") {
				return nil, fmt.Errorf("line %d: the escape directive is not supported", n)
			}
			continue
		}
		if trimmed == "" {
			continue
		}
		if current.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(trimmed, `\`) {
			current.WriteString(strings.TrimSuffix(strings.TrimRight(line, " \t"), `\`))
			continue
		}
		current.WriteString(line)
		out = append(out, logicalLine{number: start, text: current.String()})
		current.Reset()
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if current.Len() > 0 {
		return nil, fmt.Errorf("line %d: the file ends inside a line continuation", start)
	}
	return out, nil
}

func parseFrom(rest string) (*Stage, error) {
	words := strings.Fields(rest)
	if len(words) > 0 && strings.HasPrefix(words[0], "--") {
		return nil, fmt.Errorf("FROM flag %s is not supported", words[0])
	}
	switch {
	case len(words) == 1:
		return &Stage{From: words[0]}, checkPlain("FROM", words[0])
	case len(words) == 3 && strings.EqualFold(words[1], "AS"):
		return &Stage{From: words[0], Name: words[2]}, checkPlain("FROM", words[0])
	}
	return nil, fmt.Errorf("FROM wants IMAGE [AS NAME], got %q", rest)
}

func parseInstruction(keyword, rest string) (Instruction, error) {
	in := Instruction{Cmd: keyword}
	if rest == "" {
		return in, fmt.Errorf("%s without arguments", keyword)
	}
	switch keyword {
	case "RUN", "ENTRYPOINT", "CMD":
		if strings.HasPrefix(rest, "--") {
			return in, fmt.Errorf("%s flags (%s) are not supported", keyword, strings.Fields(rest)[0])
		}
		if strings.HasPrefix(rest, "<<") {
			return in, fmt.Errorf("%s heredocs are not supported", keyword)
		}
		argv, shell, err := commandForm(rest)
		if err != nil {
			return in, fmt.Errorf("%s: %v", keyword, err)
		}
		in.Args, in.Shell = argv, shell
	case "COPY":
		words := strings.Fields(rest)
		for len(words) > 0 && strings.HasPrefix(words[0], "--") {
			flag := words[0]
			words = words[1:]
			from, ok := strings.CutPrefix(flag, "--from=")
			if !ok || from == "" || in.From != "" {
				return in, fmt.Errorf("COPY flag %s is not supported (only --from=STAGE)", flag)
			}
			in.From = from
		}
		if strings.HasPrefix(strings.TrimSpace(strings.Join(words, " ")), "[") {
			return in, fmt.Errorf("COPY in JSON form is not supported")
		}
		if len(words) < 2 {
			return in, fmt.Errorf("COPY wants SOURCE... DEST")
		}
		for _, w := range words {
			if err := checkPlain("COPY", w); err != nil {
				return in, err
			}
			if strings.ContainsAny(w, "*?[") {
				return in, fmt.Errorf("COPY wildcards are not supported: %q", w)
			}
		}
		in.Args = words
	case "WORKDIR", "USER":
		words := strings.Fields(rest)
		if len(words) != 1 {
			return in, fmt.Errorf("%s wants one argument", keyword)
		}
		if err := checkPlain(keyword, words[0]); err != nil {
			return in, err
		}
		if keyword == "WORKDIR" && !strings.HasPrefix(words[0], "/") {
			return in, fmt.Errorf("WORKDIR must be absolute, got %q", words[0])
		}
		in.Args = words
	case "EXPOSE":
		in.Args = strings.Fields(rest)
		for _, w := range in.Args {
			if err := checkPlain(keyword, w); err != nil {
				return in, err
			}
		}
	case "ENV", "LABEL":
		pairs, err := keyValues(keyword, rest)
		if err != nil {
			return in, err
		}
		in.Pairs = pairs
	default:
		return in, fmt.Errorf("%s is not supported by tests/images/build (extend the builder, or write the image with RUN, COPY, WORKDIR, ENV, USER, ENTRYPOINT, CMD, EXPOSE and LABEL)", keyword)
	}
	return in, nil
}

// commandForm returns RUN/ENTRYPOINT/CMD arguments as argv: a JSON array as given,
// anything else as /bin/sh -c TEXT (Docker's rule, including its fallback to shell form
// when the brackets do not hold valid JSON).
func commandForm(rest string) ([]string, bool, error) {
	if strings.HasPrefix(rest, "[") {
		var argv []string
		if err := json.Unmarshal([]byte(rest), &argv); err == nil {
			if len(argv) == 0 {
				return nil, false, fmt.Errorf("empty JSON array")
			}
			return argv, false, nil
		}
	}
	return []string{"/bin/sh", "-c", rest}, true, nil
}

// checkPlain refuses variable references: the builder does not expand them, and Docker
// would.
func checkPlain(keyword, word string) error {
	if strings.Contains(word, "$") {
		return fmt.Errorf("%s: variable references are not supported: %q", keyword, word)
	}
	return nil
}

// keyValues parses `K=V K2="V 2"` (and the legacy `K V...` form of ENV), with double or
// single quotes and backslash escapes, as Docker reads them.
func keyValues(keyword, rest string) ([][2]string, error) {
	words, err := shellWords(rest)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", keyword, err)
	}
	if len(words) > 0 && !strings.Contains(words[0], "=") {
		if keyword != "ENV" || len(words) < 2 {
			return nil, fmt.Errorf("%s wants KEY=VALUE pairs", keyword)
		}
		key, value, _ := strings.Cut(strings.TrimSpace(rest), " ")
		if strings.Contains(value, "$") {
			return nil, fmt.Errorf("ENV: variable references are not supported: %q", value)
		}
		return [][2]string{{key, strings.TrimSpace(value)}}, nil
	}
	var pairs [][2]string
	for _, w := range words {
		key, value, ok := strings.Cut(w, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("%s: %q is not KEY=VALUE", keyword, w)
		}
		pairs = append(pairs, [2]string{key, value})
	}
	return pairs, nil
}

// shellWords splits on unquoted whitespace, removing quotes; `$` outside single quotes
// is refused (no expansion here).
func shellWords(s string) ([]string, error) {
	var words []string
	var word strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		case c == '\\' && i+1 < len(s):
			i++
			word.WriteByte(s[i])
			inWord = true
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated single quote")
			}
			word.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				} else if s[i] == '$' {
					return nil, fmt.Errorf("variable references are not supported")
				}
				word.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote")
			}
			inWord = true
		case c == '$':
			return nil, fmt.Errorf("variable references are not supported")
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
}
