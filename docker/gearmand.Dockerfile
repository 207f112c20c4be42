# gearmand 1.1.20 from Debian 12, the same server the test suite runs against.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends gearman-job-server \
 && rm -rf /var/lib/apt/lists/*
EXPOSE 4730
ENTRYPOINT ["gearmand", "--listen", "0.0.0.0", "--port", "4730", "--log-file", "stderr"]
