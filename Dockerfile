# Image for the orchestrator: CLI, workers and migrations (compose.yaml uses it).
# The base image is pinned to an exact patch release. To pin its digest as well (recommended;
# look it up where the registry is reachable):
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Runtime dependencies only, hash-checked: requirements.prod.lock has no test or lint tools.
COPY requirements.prod.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.prod.lock
COPY src ./src
# A plain (not editable) install: the migrations ship inside the packages.
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf src \
    && useradd --create-home --uid 10001 orchestrator
USER orchestrator

ENTRYPOINT ["orchestrator"]
CMD ["status"]
