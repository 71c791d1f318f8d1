# make deb      build dist/tracker-backup_<version>_all.deb (Debian 12 or 13: needs the build
#               packages listed in docs/install.md; ./scripts/setup-test-env installs them)
# make lintian  build, then run lintian on the package
# BUILD_DIR / DIST_DIR may be overridden (the e2e tests build into their own temp dirs).

VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' agent/tracker_backup/__init__.py)
DEB_VERSION := $(shell dpkg-parsechangelog -l packaging/debian/changelog -S Version)
BUILD_DIR ?= build/deb
DIST_DIR ?= dist
DEB := tracker-backup_$(VERSION)_all.deb
# Debian's tools and interpreter, whatever python3 is first on the caller's PATH.
CLEAN_PATH := PATH=/usr/sbin:/usr/bin:/sbin:/bin

.PHONY: deb lintian clean

deb:
	@test "$(VERSION)" = "$(DEB_VERSION)" || \
		{ echo "version mismatch: agent $(VERSION), packaging/debian/changelog $(DEB_VERSION)" >&2; exit 1; }
	rm -rf "$(BUILD_DIR)"
	mkdir -p "$(BUILD_DIR)/src" "$(DIST_DIR)"
	tar -cf - --exclude=__pycache__ --exclude='*.egg-info' --exclude=.debhelper \
		agent units packaging docs pyproject.toml setup.cfg README.md | tar -xf - -C "$(BUILD_DIR)/src"
	cp -a packaging/debian "$(BUILD_DIR)/src/debian"
	cd "$(BUILD_DIR)/src" && env $(CLEAN_PATH) dpkg-buildpackage -us -uc -b >../build.log 2>&1 || \
		{ tail -40 ../build.log >&2; exit 1; }
	cp "$(BUILD_DIR)/$(DEB)" "$(DIST_DIR)/$(DEB)"
	@echo "$(DIST_DIR)/$(DEB)"

lintian: deb
	env $(CLEAN_PATH) lintian --info --display-info --pedantic "$(DIST_DIR)/$(DEB)"

clean:
	rm -rf build/deb dist
