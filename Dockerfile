# syntax=docker/dockerfile:1
# One image for web, worker and beat (see platform/compose.yaml).

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    PLATFORM_VAR_DIR=/var/lib/sleep-platform
RUN groupadd --system app && useradd --system --gid app --home /app app \
    && mkdir -p /var/lib/sleep-platform && chown app:app /var/lib/sleep-platform
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=app:app . /app
# Static files are collected at build time with throwaway secrets (never used at run time).
RUN DJANGO_SECRET_KEY=build-only FIELD_ENCRYPTION_KEYS=ZGV2LW9ubHktZmVybmV0LWtleS1ub3QtZm9yLXByb2Q= \
    python manage.py collectstatic --noinput && chown -R app:app /var/lib/sleep-platform
USER app
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "-c", "platform/gunicorn.conf.py", "--bind", "0.0.0.0:8000"]
