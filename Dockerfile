# One image for every Chuchuang process: `chuchuang api` (default), `worker`, `sandbox`,
# `db upgrade`. See docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker.py settings.py ./
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY domain ./domain
COPY db ./db
COPY integrations ./integrations
COPY sandbox ./sandbox
COPY cli ./cli
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin chuchuang \
    && mkdir -p /data \
    && chown chuchuang:chuchuang /data

# sandbox keys, the generated JWT secret, ...: share this volume between api, worker, sandbox
ENV DATA_DIR=/data
VOLUME ["/data"]
USER chuchuang

EXPOSE 8000 8800
CMD ["chuchuang", "api"]
