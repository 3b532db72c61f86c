"""The daemon: lifecycle, heartbeat, watchers and systemd integration."""
