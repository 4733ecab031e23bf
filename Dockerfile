# syntax=docker/dockerfile:1.7
# The dagctl image: one binary (scheduler, webserver, task runner in pods) on distroless, with git and ssh for
# git-synced DAGs. Non-root (65532), made for a read-only root filesystem: the data dir /var/lib/dagctl and /tmp
# are volumes (the Helm chart mounts emptyDirs there). Build and pin by the digest it prints:
#   docker build -t registry.example/dagctl:build . && docker push registry.example/dagctl:build
#   (then use registry.example/dagctl@sha256:<digest> in the chart's image.digest, never the tag)
# The base images are pinned by digest too; update both pins together (docker buildx imagetools inspect).
ARG RUST_IMAGE=rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

FROM ${RUST_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dagctl \
    && install -m 0755 target/release/dagctl /dagctl
RUN deploy/image/rootfs.sh /dagctl /rootfs

FROM ${RUNTIME_IMAGE}
COPY --from=build /rootfs/ /
ENV DAGCTL_HOME=/var/lib/dagctl
WORKDIR /var/lib/dagctl
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/dagctl"]
CMD ["--help"]
