# The sidecar image the Helm chart runs (charts/pare). Not built in CI: this
# machine has no container engine, so this file is unverified here.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /pare ./cmd/proxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /pare /pare
USER 65532:65532
ENTRYPOINT ["/pare"]
CMD ["serve"]
