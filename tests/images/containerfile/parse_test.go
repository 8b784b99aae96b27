package containerfile

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsesStagesFormsAndContinuations(t *testing.T) {
	f, err := Parse("t", `# syntax=docker/dockerfile:1
FROM docker.io/library/golang:1.26-bookworm AS build
RUN GOBIN=/out go install \
    # a comment inside a continuation is dropped, as Docker drops it
    example.com/tool@v1.0.0

FROM docker.io/library/debian:bookworm-slim
ENV A=1 B="two words" C='$literal'
ENV LEGACY some value
COPY --from=build /out/tool /usr/local/bin/tool
COPY a b /dest/
WORKDIR /srv
USER 65532:65532
EXPOSE 8080 53/udp
LABEL org.opencontainers.image.title=demo
ENTRYPOINT ["/usr/local/bin/tool"]
CMD run --now
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Stages) != 2 || f.Stages[0].Name != "build" || f.Final().From != "docker.io/library/debian:bookworm-slim" {
		t.Fatalf("stages: %+v", f.Stages)
	}
	run := f.Stages[0].Instructions[0]
	if !run.Shell || run.Line != 3 || !reflect.DeepEqual(run.Args[:2], []string{"/bin/sh", "-c"}) ||
		strings.Join(strings.Fields(run.Args[2]), " ") != "GOBIN=/out go install example.com/tool@v1.0.0" {
		t.Fatalf("RUN: %+v", run)
	}
	final := f.Final().Instructions
	want := []struct {
		cmd  string
		args []string
	}{
		{"ENV", nil}, {"ENV", nil},
		{"COPY", []string{"/out/tool", "/usr/local/bin/tool"}},
		{"COPY", []string{"a", "b", "/dest/"}},
		{"WORKDIR", []string{"/srv"}},
		{"USER", []string{"65532:65532"}},
		{"EXPOSE", []string{"8080", "53/udp"}},
		{"LABEL", nil},
		{"ENTRYPOINT", []string{"/usr/local/bin/tool"}},
		{"CMD", []string{"/bin/sh", "-c", "run --now"}},
	}
	if len(final) != len(want) {
		t.Fatalf("final stage: %d instructions, want %d", len(final), len(want))
	}
	for i, w := range want {
		if final[i].Cmd != w.cmd || (w.args != nil && !reflect.DeepEqual(final[i].Args, w.args)) {
			t.Errorf("instruction %d = %s %q, want %s %q", i, final[i].Cmd, final[i].Args, w.cmd, w.args)
		}
	}
	if final[2].From != "build" {
		t.Errorf("COPY --from = %q", final[2].From)
	}
	if got := final[0].Pairs; !reflect.DeepEqual(got, [][2]string{{"A", "1"}, {"B", "two words"}, {"C", "$literal"}}) {
		t.Errorf("ENV pairs = %q", got)
	}
	if got := final[1].Pairs; !reflect.DeepEqual(got, [][2]string{{"LEGACY", "some value"}}) {
		t.Errorf("legacy ENV = %q", got)
	}
}

// Whatever the builder would not execute exactly as podman does must be refused, with
// the file and line.
func TestRefusesWhatTheBuilderDoesNotExecute(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"ADD", "FROM scratch\nADD x /x\n", "ADD is not supported"},
		{"ARG", "ARG V=1\nFROM scratch\n", "ARG before the first FROM"},
		{"ARG in stage", "FROM scratch\nARG V\n", "ARG is not supported"},
		{"SHELL", "FROM scratch\nSHELL [\"/bin/bash\", \"-c\"]\n", "SHELL is not supported"},
		{"HEALTHCHECK", "FROM scratch\nHEALTHCHECK CMD true\n", "HEALTHCHECK is not supported"},
		{"VOLUME", "FROM scratch\nVOLUME /data\n", "VOLUME is not supported"},
		{"RUN --mount", "FROM scratch\nRUN --mount=type=cache,target=/c true\n", "RUN flags (--mount=type=cache,target=/c) are not supported"},
		{"heredoc", "FROM scratch\nRUN <<EOF\ntrue\nEOF\n", "heredocs are not supported"},
		{"COPY --chown", "FROM scratch\nCOPY --chown=1:1 a /a\n", "COPY flag --chown=1:1 is not supported"},
		{"COPY --chmod", "FROM scratch\nCOPY --chmod=755 a /a\n", "COPY flag --chmod=755 is not supported"},
		{"COPY wildcard", "FROM scratch\nCOPY *.c /src/\n", "wildcards are not supported"},
		{"COPY from unknown stage", "FROM scratch\nCOPY --from=nope /a /a\n", "names no earlier stage"},
		{"variables", "FROM scratch\nENV A=$B\n", "variable references are not supported"},
		{"variables in COPY", "FROM scratch\nCOPY ${SRC} /a\n", "variable references are not supported"},
		{"FROM --platform", "FROM --platform=linux/arm64 scratch\n", "FROM flag --platform=linux/arm64 is not supported"},
		{"relative WORKDIR", "FROM scratch\nWORKDIR src\n", "WORKDIR must be absolute"},
		{"escape directive", "# escape=`\nFROM scratch\n", "escape directive is not supported"},
		{"duplicate stage", "FROM scratch AS a\nFROM scratch AS a\n", "defined twice"},
		{"open continuation", "FROM scratch\nRUN true \\\n", "ends inside a line continuation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("Containerfile", tc.text)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "Containerfile:") {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
