FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 DJANGO_STATIC_ROOT=/app/staticfiles
COPY pyproject.toml README.md ./
COPY project ./project
COPY tasks ./tasks
COPY realtime ./realtime
RUN pip install --no-cache-dir .
COPY . .
RUN useradd --create-home tasklight && mkdir -p /app/var/exports /app/staticfiles && chown -R tasklight /app
USER tasklight
EXPOSE 8000
