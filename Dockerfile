# The sidecar image the Helm chart runs (charts/pare), for those who build
# with a container engine. Without one, `go run ./cmd/image -o pare-image`
# builds the same image as an OCI layout (static binary, scratch base,
# non-root; internal/ociimage), and that build is the one the tests check.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static and trimmed, as internal/ociimage.GoBuildFlags build it.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /pare ./cmd/proxy

# distroless/static is scratch plus CA certificates, /etc/passwd with the
# nonroot user (65532) and tzdata: the files internal/ociimage writes.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /pare /pare
USER 65532:65532
LABEL org.opencontainers.image.title="pare" \
      org.opencontainers.image.description="Pare, the need-to-know egress proxy: every vendor call leaves minimized to its contract, recorded, or not at all." \
      org.opencontainers.image.source="https://github.com/pare-dev/pare"
ENTRYPOINT ["/pare"]
CMD ["serve"]
