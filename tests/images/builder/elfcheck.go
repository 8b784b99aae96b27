package main

import (
	"archive/tar"
	"debug/elf"
	"fmt"
	"path"
	"strings"
)

// libraryDirs are where Debian's dynamic loader looks on amd64, in its order.
var libraryDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
	"/lib", "/usr/lib", "/usr/local/lib",
}

// checkBinaries verifies that every ELF file put into the image from outside (COPY) can
// start with the image's own loader and libraries, including the symbol versions it
// needs: a binary built against a newer glibc than the image's fails here, at build
// time, instead of in a pod ("images that only work on this machine").
func checkBinaries(s *fsState) error {
	for _, e := range s.overlay {
		if e.Type != tar.TypeReg {
			continue
		}
		f, err := elf.Open(e.Source)
		if err != nil {
			continue // not an ELF file
		}
		err = checkELF(s, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s (from %s): %w", e.Path, e.Source, err)
		}
	}
	return nil
}

func checkELF(s *fsState, f *elf.File) error {
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("built for %v, but the images are linux/amd64", f.Machine)
	}
	interp := ""
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			data := make([]byte, p.Filesz)
			if _, err := p.ReadAt(data, 0); err != nil {
				return err
			}
			interp = strings.TrimRight(string(data), "\x00")
		}
	}
	if interp == "" {
		return nil // static
	}
	if _, err := s.file(interp); err != nil {
		return fmt.Errorf("needs the dynamic loader %s, which the image does not have", interp)
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return err
	}
	dirs := append([]string(nil), libraryDirs...)
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		if values, err := f.DynString(tag); err == nil {
			for _, v := range values {
				dirs = append(strings.Split(v, ":"), dirs...)
			}
		}
	}
	libs := map[string]string{}
	for _, name := range needed {
		for _, dir := range dirs {
			if host, err := s.file(path.Join(dir, name)); err == nil {
				libs[name] = host
				break
			}
		}
		if libs[name] == "" {
			return fmt.Errorf("needs %s, which the image does not have", name)
		}
	}
	needs, err := f.DynamicVersionNeeds()
	if err != nil {
		return nil // no version requirements
	}
	for _, need := range needs {
		host, ok := libs[need.Name]
		if !ok {
			continue
		}
		defined, err := versionsDefined(host)
		if err != nil {
			return fmt.Errorf("%s: %w", need.Name, err)
		}
		for _, dep := range need.Needs {
			if !defined[dep.Dep] {
				return fmt.Errorf("needs %s from %s, which the image's %s does not define (built on a newer system than the image's Debian?)", dep.Dep, need.Name, need.Name)
			}
		}
	}
	return nil
}

func versionsDefined(host string) (map[string]bool, error) {
	lib, err := elf.Open(host)
	if err != nil {
		return nil, err
	}
	defer lib.Close()
	versions, err := lib.DynamicVersions()
	if err != nil {
		return nil, err
	}
	defined := map[string]bool{}
	for _, v := range versions {
		defined[v.Name] = true
	}
	return defined, nil
}
