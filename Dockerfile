# Build the manager and the authorization server (one image, two commands).
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH

WORKDIR /workspace
# Download modules first so source edits do not invalidate this layer.
COPY go.mod go.sum ./
RUN go mod download

COPY VERSION ./
COPY cmd/ cmd/
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/

# A static binary (CGO_ENABLED=0) runs on distroless/static. GOARCH has no
# default so the same Dockerfile builds for the platform docker buildx asks for.
# The version in VERSION is linked in: `manager --version` and
# snowauth_build_info report it.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath \
    -ldflags="-s -w -X github.com/snowauth/snowauth/internal/version.version=$(cat VERSION)" -o manager ./cmd && \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath \
    -ldflags="-s -w -X github.com/snowauth/snowauth/internal/version.version=$(cat VERSION)" -o authserver ./cmd/authserver

# The final image: no shell, no package manager, runs as an unprivileged user.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/manager /workspace/authserver ./
USER 65532:65532

# The chart and config/ name the command: /manager, or /authserver for the
# authorization server's Deployment.
ENTRYPOINT ["/manager"]
