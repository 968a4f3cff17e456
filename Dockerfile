# berth for those who build with Docker. `make image` builds the same image without a
# Docker daemon (tools/release; internal/release's tests check that the two agree).
#
#   docker build -t berth --build-arg VERSION=v1.2.3 \
#     --build-arg REVISION=$(git rev-parse HEAD) --build-arg DATE=$(git log -1 --format=%cI) .

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG REVISION=
ARG DATE=
RUN CGO_ENABLED=0 go build -trimpath -o /out/berth \
      -ldflags "-s -w -X github.com/berth-sh/berth/internal/buildinfo.version=${VERSION} -X github.com/berth-sh/berth/internal/buildinfo.revision=${REVISION} -X github.com/berth-sh/berth/internal/buildinfo.date=${DATE}" \
      ./cmd/berth \
    && mkdir -m 0700 /out/data

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
ARG REVISION=
ARG DATE=
LABEL org.opencontainers.image.title="berth" \
      org.opencontainers.image.source="https://github.com/berth-sh/berth" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${DATE}"
COPY --from=build /out/berth /usr/bin/berth
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
VOLUME /data
EXPOSE 8080/tcp
ENTRYPOINT ["/usr/bin/berth"]
CMD ["serve", "--addr", "0.0.0.0:8080", "--data-dir", "/data"]
