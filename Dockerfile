# The operator image. It also serves as the Triton pods' init container, which runs
# `smallfleet fetch` to download, verify and unpack each model artifact.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 1000 --no-create-home --shell /usr/sbin/nologin smallfleet
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 1000:1000
ENTRYPOINT ["smallfleet"]
CMD ["run", "--all-namespaces"]
