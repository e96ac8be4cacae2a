# Docker targets (included by the Makefile; docs/containers.md). Image stages: see the Dockerfile.
COMPOSE ?= docker compose
IMAGE   ?= ai-from-scratch
STAGE   ?=
# The learner in the image gets your UID, so it owns the image's venv as well as your clone
# (root on the host: the image's default, 1000; the entrypoint then runs as root, the clone's
# owner: docs/containers.md, "Whose files are whose"). docker-compose.yml reads it too.
export LEARNER_UID ?= $(shell u=$$(id -u); [ "$$u" = 0 ] && echo 1000 || echo $$u)

.PHONY: docker-build docker-build-base docker-build-dev docker-build-prod docker-up docker-up-cpu docker-down docker-logs docker-doctor

docker-build: $(if $(STAGE),docker-build-$(STAGE),docker-build-base docker-build-dev docker-build-prod) ## Build every image stage, or one: make docker-build STAGE=dev
	@docker image ls $(IMAGE)

docker-build-base: ## Build the base stage (CUDA base image, Python, Poetry)
	docker build --target base -t $(IMAGE):base .

docker-build-dev: ## Build the dev stage (every group, JupyterLab) as compose uses it
	docker build --target dev --build-arg LEARNER_UID=$(LEARNER_UID) -t $(IMAGE):dev .

docker-build-prod: ## Build the prod stage (headless notebooks + CLI, no dev tools)
	docker build --target prod -t $(IMAGE):prod .

docker-up: ## JupyterLab in the container with the GPU (http://localhost:8888; make docker-logs for the token)
	$(COMPOSE) up -d --build jupyter
	@echo ">> login URL: make docker-logs   |   GPU check: make docker-doctor   |   stop: make docker-down"

docker-up-cpu: ## JupyterLab in the container without a GPU
	$(COMPOSE) --profile cpu up -d --build jupyter-cpu
	@echo ">> login URL: make docker-logs   |   stop: make docker-down"

docker-down: ## Stop the containers (data, outputs, wandb files and caches persist)
	$(COMPOSE) --profile cpu down

docker-logs: ## Show JupyterLab's log with its login URL (token included)
	$(COMPOSE) --profile cpu logs jupyter jupyter-cpu

docker-doctor: ## Run `make doctor` in the running container: is the GPU seen?
	@svc=$$($(COMPOSE) --profile cpu ps --services --status running | grep -m1 '^jupyter'); \
	  test -n "$$svc" || { echo "no JupyterLab container is running: make docker-up (or docker-up-cpu) first"; exit 2; }; \
	  $(COMPOSE) --profile cpu exec "$$svc" make doctor
