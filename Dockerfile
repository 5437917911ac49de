# Image for the orchestrator: CLI, workers and migrations (compose.yaml uses it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY src ./src
# A plain (not editable) install: the migrations ship inside the packages.
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf src \
    && useradd --create-home --uid 10001 orchestrator
USER orchestrator

ENTRYPOINT ["orchestrator"]
CMD ["status"]
