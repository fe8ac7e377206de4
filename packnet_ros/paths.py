"""Where the package's data files are: config/, launch/, msg/ (source tree or installed share)."""
from __future__ import annotations

from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def share_dir() -> Path:
    """Directory holding config/, launch/ and msg/.

    The source checkout (editable / venv install) when it has them, else the ament share
    directory of an installed package (colcon: <prefix>/share/packnet_ros).

    Raises:
        FileNotFoundError: neither is found.
    """
    if (SOURCE_ROOT / 'config').is_dir() and (SOURCE_ROOT / 'msg').is_dir():
        return SOURCE_ROOT
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory('packnet_ros'))
    except Exception as exc:  # noqa: BLE001 - ament index missing or package not installed
        raise FileNotFoundError(f'packnet_ros data files not found (no source tree, no ament '
                                f'share directory: {exc})') from exc
    return share


def config_file(name: str) -> Path:
    """Path of ``config/<name>``.

    Raises:
        FileNotFoundError: no such file.
    """
    path = share_dir() / 'config' / name
    if not path.is_file():
        raise FileNotFoundError(f'config file {path} not found')
    return path


def fastdds_profile() -> Path:
    """The Fast DDS profile for large messages (config/fastdds_large_messages.xml)."""
    return config_file('fastdds_large_messages.xml')


def msg_definition(name: str) -> str:
    """Text of ``msg/<name>.msg`` (for rosbags typestores)."""
    return (share_dir() / 'msg' / f'{name}.msg').read_text()
