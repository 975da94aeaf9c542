# The Stratoflow worker image: `stratoflow worker start` long-polling a work pool's SQS queue.
#
#   docker build -t stratoflow-worker .
#   docker run --rm -e STRATOFLOW_PREFIX=stratoflow -e AWS_REGION=eu-west-1 \
#       stratoflow-worker --pool default
#
# Only the runtime dependencies are installed (no `local`/`test`/`dev` extras: no moto,
# no pytest): the worker talks to AWS with the task role's credentials. Flow code
# comes from the deployment's S3 bundle, or is baked into an image built FROM this one
# (COPY it into /home/stratoflow/flows, the working directory, and deploy with image=).
# See README.md, "Run a worker in a container".

# Pinned by tag: rebuilds take the same Python and Debian release.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user with a fixed uid (ECS task definitions may refer to it).
RUN groupadd --system --gid 10001 stratoflow \
    && useradd --system --uid 10001 --gid stratoflow --create-home \
        --home-dir /home/stratoflow --shell /usr/sbin/nologin stratoflow

WORKDIR /opt/stratoflow
COPY pyproject.toml README.md ./
COPY runtime ./runtime
COPY sdk ./sdk
COPY handlers ./handlers
# The project itself, without extras; the source tree is not needed once installed.
RUN pip install --no-cache-dir . \
    && rm -rf /opt/stratoflow/build

USER 10001:10001
WORKDIR /home/stratoflow/flows

# ECS sends SIGTERM, waits the task definition's stopTimeout, then SIGKILL: the worker
# stops polling on SIGTERM, lets running flows finish within its grace period
# (STRATOFLOW_SHUTDOWN_GRACE_SECONDS, keep it below stopTimeout) and hands the rest back.
STOPSIGNAL SIGTERM

# No HEALTHCHECK: the worker serves no port, and a check that calls AWS every interval
# would cost requests for what the platform already sees. A dead worker exits (ECS
# replaces the task); a hung one stops heartbeating, so the maintenance sweep crashes
# and re-enqueues its runs, and `stratoflow worker ls` shows its last poll.
HEALTHCHECK NONE

ENTRYPOINT ["stratoflow", "worker", "start"]
CMD ["--pool", "default"]
