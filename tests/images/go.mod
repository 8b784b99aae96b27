// The local image builder (tests/images/build) and the small programs baked into
// the test images (git-server, demo-web). Standard library only: nothing to fetch.
module gitwarden.io/tests/images

go 1.26.0
