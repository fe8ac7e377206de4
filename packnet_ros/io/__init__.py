"""Plain-Python readers and writers of recordings: no ROS runtime, no message modules.

Modules (import from them directly; this package imports nothing on its own):

* :mod:`.bag`: rosbag2 (MCAP / sqlite3) reading and writing with rosbags, damaged MCAP
  recordings with the ``mcap`` stream reader;
* :mod:`.kitti`: one KITTI raw drive folder (images, calibration, OXTS, projected LiDAR);
* :mod:`.camera_yaml`: camera intrinsics / distortion YAML files and undistortion maps;
* :mod:`.transforms`: static transforms (``/tf_static``) as a tree of rigid transforms;
* :mod:`.sequence`: training-sequence base (:class:`~.sequence.FrameSequence`), the
  :class:`~.sequence.Sample` every reader yields, context selection;
* :mod:`.kitti_sequence`, :mod:`.bag_sequence`, :mod:`.video`: training sequences of a
  KITTI drive, a rosbag2 recording and a video file (with an optional speed CSV).

Dependency direction: :mod:`packnet_ros.data`, :mod:`packnet_ros.evaluation`, training,
ROS nodes and apps import from here; nothing here imports them.
"""
