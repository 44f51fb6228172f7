FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 DJANGO_STATIC_ROOT=/app/staticfiles TASKLIGHT_FILES_DIR=/app/var/files
# The example site: the apps at the exact versions of constraints.txt, then the site itself.
COPY pyproject.toml README.md constraints.txt ./
COPY tasks ./tasks
COPY realtime ./realtime
RUN pip install --no-cache-dir -c constraints.txt '.[site]'
COPY . .
RUN useradd --create-home tasklight && mkdir -p /app/var/files /app/staticfiles && chown -R tasklight /app
USER tasklight
EXPOSE 8000
