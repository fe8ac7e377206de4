"""Pairing of images with their CameraInfo by header stamp (no rclpy import).

Like image_transport's CameraSubscriber: an image is processed with the CameraInfo of
exactly the same stamp, whichever of the two arrives first. With ``match='latest'`` an
image takes the most recent CameraInfo instead (cameras whose info stamps differ).
"""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Callable


class StampPairer:
    """Exact-stamp image/camera_info pairing with bounded memory.

    Args:
        stamp_of: function message -> hashable stamp key (e.g. nanoseconds).
        match: "exact" or "latest".
        max_infos: camera_infos remembered (by stamp).
        max_pending: images waiting for their camera_info; older ones are evicted.

    ``add_image`` / ``add_info`` return ``(image, info)`` when a pair is complete, else
    None. Evicted images (no camera_info ever matched) are collected in ``evicted`` for
    the caller to report; ``pop_evicted`` drains them.
    """

    def __init__(self, stamp_of: Callable[[Any], Any], match: str = 'exact', max_infos: int = 30,
                 max_pending: int = 3):
        if match not in ('exact', 'latest'):
            raise ValueError(f'camera_info match must be "exact" or "latest", got {match!r}')
        self.stamp_of = stamp_of
        self.match = match
        self._infos: OrderedDict = OrderedDict()
        self._pending: deque = deque()
        self._max_infos = max_infos
        self._max_pending = max_pending
        self.evicted: list = []
        self.latest_info = None

    def add_info(self, info):
        self.latest_info = info
        key = self.stamp_of(info)
        self._infos[key] = info
        self._infos.move_to_end(key)
        while len(self._infos) > self._max_infos:
            self._infos.popitem(last=False)
        for i, image in enumerate(self._pending):
            if self.stamp_of(image) == key:
                del self._pending[i]
                return image, info
        return None

    def add_image(self, image):
        if self.match == 'latest':
            return (image, self.latest_info) if self.latest_info is not None else self._hold(image)
        info = self._infos.get(self.stamp_of(image))
        return (image, info) if info is not None else self._hold(image)

    def _hold(self, image):
        self._pending.append(image)
        while len(self._pending) > self._max_pending:
            self.evicted.append(self._pending.popleft())
        return None

    def pop_evicted(self) -> list:
        out, self.evicted = self.evicted, []
        return out
