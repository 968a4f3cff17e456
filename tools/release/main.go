// Command release builds berth's release artifacts with Go alone (no Docker daemon, no
// packaging tool), by package internal/release:
//
//	go run ./tools/release image [-platforms linux/amd64,linux/arm64] [-tar FILE] [-layout DIR]
//	go run ./tools/release deb   [-arch amd64,arm64]
//
// Both take -version, -revision and -date (what `berth version` reports; the Makefile
// passes git's) and -out (default dist). `make image` and `make deb` run them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-sh/berth/internal/release"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

const usage = `usage: release image|deb [flags]; release image -h or release deb -h for the flags`

func run(args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	var m release.Meta
	fs.StringVar(&m.Version, "version", "devel", "version (v1.2.3)")
	fs.StringVar(&m.Revision, "revision", "", "VCS revision")
	fs.StringVar(&m.Date, "date", "", "commit time, RFC 3339 (also every file's mtime)")
	out := fs.String("out", "dist", "output directory")
	repo := fs.String("repo", ".", "the berth repository to build")
	switch args[0] {
	case "image":
		platforms := fs.String("platforms", "linux/"+runtime.GOARCH, "comma-separated OS/arch list")
		tarFile := fs.String("tar", "", "docker load-able tarball (one platform only; default OUT/berth-image.tar when there is one)")
		layoutDir := fs.String("layout", "", "OCI image layout directory of every platform (default OUT/berth-oci when there are several)")
		ref := fs.String("ref", "", "tag of the tarball (default berth:VERSION)")
		caBundle := fs.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to put in the image; empty for none")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if _, err := os.Stat(*caBundle); *caBundle != "" && err != nil && !flagGiven(fs, "ca-bundle") {
			fmt.Fprintf(os.Stderr, "release: no CA bundle at %s (install ca-certificates, or give -ca-bundle): the image will trust only --ca-cert files\n", *caBundle)
			*caBundle = ""
		}
		return image(m, *repo, *out, strings.Split(*platforms, ","), *tarFile, *layoutDir, *ref, *caBundle)
	case "deb":
		arches := fs.String("arch", runtime.GOARCH, "comma-separated Debian architectures (amd64, arm64)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return deb(m, *repo, *out, strings.Split(*arches, ","))
	}
	return errors.New(usage)
}

// flagGiven reports whether the flag was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

func image(m release.Meta, repo, out string, platforms []string, tarFile, layoutDir, ref, caBundle string) error {
	if len(platforms) > 1 && tarFile != "" {
		return errors.New("-tar holds one platform: give one -platforms, or use -layout")
	}
	if tarFile == "" && layoutDir == "" {
		if len(platforms) == 1 {
			tarFile = filepath.Join(out, "berth-image.tar")
		} else {
			layoutDir = filepath.Join(out, "berth-oci")
		}
	}
	if ref == "" {
		ref = "berth:" + m.Version
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var imgs []v1.Image
	for _, p := range platforms {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok || goos != "linux" {
			return fmt.Errorf("platform %q: want linux/ARCH", p)
		}
		bin := filepath.Join(out, "image-"+goos+"-"+goarch, "berth")
		if err := release.BuildBinary(context.Background(), repo, goos, goarch, bin, m); err != nil {
			return err
		}
		img, err := release.Image(release.ImageOptions{Meta: m, Binary: bin, OS: goos, Arch: goarch, CABundle: caBundle})
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
	}
	if tarFile != "" {
		if err := release.WriteImageTarball(tarFile, ref, imgs[0]); err != nil {
			return err
		}
		fmt.Printf("%s: %s (docker load -i %s)\n", tarFile, ref, tarFile)
	}
	if layoutDir != "" {
		if err := os.RemoveAll(layoutDir); err != nil {
			return err
		}
		if err := release.WriteImageLayout(layoutDir, imgs...); err != nil {
			return err
		}
		fmt.Printf("%s: OCI layout of %s\n", layoutDir, strings.Join(platforms, ", "))
	}
	return nil
}

func deb(m release.Meta, repo, out string, arches []string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, arch := range arches {
		bin := filepath.Join(out, "deb-linux-"+arch, "berth")
		if err := release.BuildBinary(context.Background(), repo, "linux", arch, bin, m); err != nil {
			return err
		}
		path, err := release.Deb(release.DebOptions{Meta: m, Binary: bin, Arch: arch, Repo: repo, Out: out})
		if err != nil {
			return err
		}
		fmt.Println(path)
	}
	return nil
}
