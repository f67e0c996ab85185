"""Segmented Docker sandboxes: images, segment profiles, the driver, job tokens, lifecycle.

Two segments, two promises: an `ml` sandbox reaches governed data only through its own unix
socket to the gateway and no network at all; an `app-dev` sandbox never reaches data.
"""
