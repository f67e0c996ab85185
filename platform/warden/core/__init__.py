"""The platform core: what one Warden process holds and runs, built and stopped in one place."""
