package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gitwarden.io/tests/images/containerfile"
	"gitwarden.io/tests/images/oci"
)

// built runs tests/images/build (the real script, with the real cache) once per test
// binary and returns the images.txt lines by name.
func built(t *testing.T, out string) map[string][]string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("building images needs root (chroot and mount namespaces)")
	}
	cmd := exec.Command(filepath.Join(repoRoot(t), "tests/images/build"), out)
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tests/images/build %s: %v\n%s", out, err, output)
	}
	data, err := os.ReadFile(filepath.Join(out, "images.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fields := strings.Split(line, "\t")
		if len(fields) != 4 {
			t.Fatalf("images.txt line %q: want NAME REFERENCE ARCHIVE DIGEST", line)
		}
		lines[fields[0]] = fields
	}
	return lines
}

// binDir is where the script takes gitwarden's binaries from, by the same rule.
func binDir() string {
	if d := os.Getenv("GITWARDEN_BIN_DIR"); d != "" {
		return d
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		cache := os.Getenv("GITWARDEN_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache/gitwarden")
		}
		target = filepath.Join(cache, "target")
	}
	return filepath.Join(target, "debug")
}

// Each built image is what its Containerfile says, checked from the archive alone
// (not from the builder's internals): the config's USER, ENTRYPOINT, CMD, ENV and
// EXPOSE, every COPY's file with its exact content where the source is known, every
// package the RUN lines install, every user and group they add. And building again
// gives the same digests.
func TestImagesMatchTheirContainerfiles(t *testing.T) {
	root := repoRoot(t)
	out := t.TempDir()
	lines := built(t, out)
	list, err := readList(filepath.Join(root, listPath))
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range list {
		t.Run(spec.Name, func(t *testing.T) {
			line, ok := lines[spec.Name]
			if !ok {
				t.Fatalf("images.txt has no line for %s", spec.Name)
			}
			if line[1] != spec.Reference || line[2] != filepath.Join(out, spec.Name+".oci.tar") {
				t.Fatalf("images.txt line %q", line)
			}
			a, err := oci.ReadArchive(line[2])
			if err != nil {
				t.Fatal(err)
			}
			checkArchive(t, a, spec, line[3])
			f, err := containerfile.ParseFile(filepath.Join(root, spec.Containerfile))
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstContainerfile(t, root, a, f)
		})
	}

	again := built(t, t.TempDir())
	for name, line := range lines {
		if again[name][3] != line[3] {
			t.Errorf("%s: rebuilt with digest %s, first %s", name, again[name][3], line[3])
		}
	}
}

func checkArchive(t *testing.T, a *oci.Archive, spec imageSpec, digest string) {
	t.Helper()
	for blob, ok := range a.Blobs {
		if !ok {
			t.Errorf("blob %s does not match its digest", blob)
		}
	}
	m := a.Index.Manifests[0]
	if m.Digest != digest || m.Annotations[oci.AnnotationContainerdName] != spec.Reference ||
		m.Platform == nil || m.Platform.OS != "linux" || m.Platform.Architecture != "amd64" {
		t.Errorf("index entry %+v (images.txt digest %s)", m, digest)
	}
	for p, f := range a.Files {
		if !f.Header.ModTime.Equal(oci.Epoch) {
			t.Errorf("%s: mtime %v", p, f.Header.ModTime)
		}
		if dir := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)[0]; (dir == "dev" || dir == "proc" || dir == "sys") && p != "/"+dir {
			t.Errorf("%s: runtime directories stay empty", p)
		}
	}
	// Nothing of this machine: its resolver and hostname are the runtime's to provide.
	if f := a.Files["/etc/resolv.conf"]; f != nil && len(f.Data) != 0 {
		t.Errorf("/etc/resolv.conf holds %q", f.Data)
	}
	if host, _ := os.Hostname(); host != "" && host != "localhost" {
		if f := a.Files["/etc/hostname"]; f != nil && strings.TrimSpace(string(f.Data)) == host {
			t.Errorf("/etc/hostname is this machine's")
		}
	}
}

// baseDefaults: what each base image's own config sets, as its publisher documents it.
var baseDefaults = map[string]oci.RunConfig{
	"scratch":                                {},
	"docker.io/library/debian:bookworm-slim": {Cmd: []string{"bash"}},
	"gcr.io/distroless/cc-debian12:nonroot": {User: "65532", WorkingDir: "/home/nonroot",
		Env: []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}},
}

var (
	aptInstall    = regexp.MustCompile(`apt-get install ([^&;|]*)`)
	releaseBinary = regexp.MustCompile(`target/release/`)
)

func checkAgainstContainerfile(t *testing.T, root string, a *oci.Archive, f *containerfile.File) {
	t.Helper()
	final := f.Final()
	want, ok := baseDefaults[final.From]
	if !ok {
		t.Fatalf("no defaults known for base %s", final.From)
	}
	var env []string
	for _, in := range final.Instructions {
		switch in.Cmd {
		case "USER":
			want.User = in.Args[0]
		case "ENTRYPOINT":
			want.Entrypoint, want.Cmd = in.Args, nil
		case "CMD":
			want.Cmd = in.Args
		case "WORKDIR":
			want.WorkingDir = in.Args[0]
		case "ENV":
			for _, kv := range in.Pairs {
				env = append(env, kv[0]+"="+kv[1])
			}
		case "EXPOSE":
			for _, p := range in.Args {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				if _, ok := a.Config.Config.ExposedPorts[p]; !ok {
					t.Errorf("EXPOSE %s: not in the config", p)
				}
			}
		case "COPY":
			checkCopy(t, root, a, f, in)
		case "RUN":
			checkRun(t, a, in)
		}
	}
	got := a.Config.Config
	if got.User != want.User || !reflect.DeepEqual(got.Entrypoint, want.Entrypoint) ||
		!reflect.DeepEqual(got.Cmd, want.Cmd) || got.WorkingDir != want.WorkingDir {
		t.Errorf("config user %q entrypoint %q cmd %q workdir %q; the Containerfile says %q %q %q %q",
			got.User, got.Entrypoint, got.Cmd, got.WorkingDir, want.User, want.Entrypoint, want.Cmd, want.WorkingDir)
	}
	for _, kv := range append(append(want.Env, env...), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") {
		if !slices.Contains(got.Env, kv) {
			t.Errorf("env %q is missing from %q", kv, got.Env)
		}
	}
}

// checkCopy: the COPY destination is a root-owned regular file in the layer, with the
// content of its source when the source is on this machine (the build context, or a
// gitwarden binary of the rust stage).
func checkCopy(t *testing.T, root string, a *oci.Archive, f *containerfile.File, in containerfile.Instruction) {
	t.Helper()
	srcs, dest := in.Args[:len(in.Args)-1], in.Args[len(in.Args)-1]
	for _, src := range srcs {
		target := dest
		if strings.HasSuffix(dest, "/") || len(srcs) > 1 {
			target = path.Join(dest, path.Base(src))
		}
		file := a.Files[target]
		if file == nil {
			t.Errorf("COPY %s %s: %s is not in the image", src, dest, target)
			continue
		}
		if h := file.Header; h.Typeflag != tar.TypeReg || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: type %q owner %d:%d, want a root-owned file", target, h.Typeflag, h.Uid, h.Gid)
		}
		var source string
		switch stage := f.Stage(in.From); {
		case in.From == "":
			source = filepath.Join(root, src)
		case strings.HasPrefix(stage.From, "docker.io/library/rust:") && stageMentions(stage, releaseBinary):
			source = filepath.Join(binDir(), path.Base(src))
		default:
			continue
		}
		if sum := fileSHA256(t, source); sum != file.SHA256 {
			t.Errorf("%s differs from %s", target, source)
		}
	}
}

func stageMentions(st *containerfile.Stage, re *regexp.Regexp) bool {
	for _, in := range st.Instructions {
		if in.Cmd == "RUN" && re.MatchString(strings.Join(in.Args, " ")) {
			return true
		}
	}
	return false
}

// checkRun: packages the RUN installs are installed; users and groups it adds exist
// with the ids it gives.
func checkRun(t *testing.T, a *oci.Archive, in containerfile.Instruction) {
	t.Helper()
	text := strings.Join(in.Args, " ")
	status := ""
	if f := a.Files["/var/lib/dpkg/status"]; f != nil {
		status = string(readAll(t, a, "/var/lib/dpkg/status"))
	}
	for _, m := range aptInstall.FindAllStringSubmatch(text, -1) {
		for _, pkg := range strings.Fields(m[1]) {
			if strings.HasPrefix(pkg, "-") {
				continue
			}
			if !strings.Contains(status, "Package: "+pkg+"\nStatus: install ok installed\n") {
				t.Errorf("RUN installs %s, but the image's dpkg status does not list it as installed", pkg)
			}
		}
	}
	for _, command := range strings.Split(text, "&&") {
		words := strings.Fields(command)
		if len(words) < 2 {
			continue
		}
		var file, flag string
		switch words[0] {
		case "useradd":
			file, flag = "/etc/passwd", "--uid"
		case "groupadd":
			file, flag = "/etc/group", "--gid"
		default:
			continue
		}
		id := words[slices.Index(words, flag)+1]
		name := words[len(words)-1]
		if !strings.Contains("\n"+string(readAll(t, a, file)), "\n"+name+":x:"+id+":") {
			t.Errorf("RUN %s adds %s with id %s, but %s does not have it", words[0], name, id, file)
		}
	}
}

func readAll(t *testing.T, a *oci.Archive, p string) []byte {
	t.Helper()
	f := a.Files[p]
	if f == nil || f.Data == nil {
		t.Fatalf("%s is not in the image (or too large to read here)", p)
	}
	return f.Data
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
