package main

import (
	"fmt"

	"gitwarden.io/tests/images/containerfile"
)

// check reads a whole Containerfile the way buildImage will execute it, without running
// anything: every stage the image needs starts FROM something the builder can make,
// toolchain stages are in the forms it understands, and COPY --from a rust stage names
// a binary that stage builds. buildImage calls it first, so a Containerfile the builder
// cannot follow fails before minutes of debootstrap; the tests call it on every listed
// Containerfile.
func (b *builder) check(f *containerfile.File) error {
	needed := neededStages(f)
	tools := map[string]*toolchainStage{}
	for _, st := range f.Stages {
		if !needed[st] {
			continue
		}
		switch kind := toolchainKind(st.From); {
		case kind != "" && st == f.Final():
			return fmt.Errorf("%s:%d: the last stage is a toolchain stage; it must make the image's file system", f.Path, st.Line)
		case kind == "rust":
			t, err := b.toolchain(kind, f, st)
			if err != nil {
				return err
			}
			tools[st.Name] = t
		case kind == "golang":
			if st.Name == "" {
				return fmt.Errorf("%s:%d: a golang stage needs a name (AS NAME) for COPY --from", f.Path, st.Line)
			}
			if _, err := b.parseGoStage(f, st); err != nil {
				return err
			}
		case st.From != "scratch":
			if _, ok := baseRecipes[st.From]; !ok {
				return fmt.Errorf("%s:%d: base image %s: the builder can make scratch and %s (and runs rust:* and golang:* stages with the local toolchains)", f.Path, st.Line, st.From, knownBases())
			}
		}
		for _, in := range st.Instructions {
			if in.Cmd != "COPY" || tools[in.From] == nil {
				continue
			}
			for _, src := range in.Args[:len(in.Args)-1] {
				if _, ok := tools[in.From].files[cleanAbs(src)]; !ok {
					return fmt.Errorf("%s:%d: stage %s does not build %s", f.Path, in.Line, in.From, src)
				}
			}
		}
	}
	return nil
}
