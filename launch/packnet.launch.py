"""Launch packnet_node (and optionally RViz) on a vehicle.

    ros2 launch packnet_ros packnet.launch.py \
        image:=/camera/image_raw camera_info:=/camera/camera_info odom:=/odom \
        namespace:=perception params_file:=/path/to/packnet.yaml use_sim_time:=false rviz:=true

Arguments: namespace, params_file (default: the package's config/packnet.yaml),
image / camera_info / odom (input topics), use_sim_time, fastdds_profile
(large-message Fast DDS profile; "" keeps the environment's), rviz. The checkpoint and
every other node parameter come from the params file.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory('packnet_ros')
    args = [
        DeclareLaunchArgument('namespace', default_value='', description='Node namespace'),
        DeclareLaunchArgument('params_file', default_value=os.path.join(share, 'config', 'packnet.yaml'),
                              description='YAML parameters of packnet_node'),
        DeclareLaunchArgument('image', default_value='/camera/image_raw', description='Camera image topic'),
        DeclareLaunchArgument('camera_info', default_value='/camera/camera_info',
                              description='CameraInfo topic matching the images'),
        DeclareLaunchArgument('odom', default_value='/odom', description='nav_msgs/Odometry topic'),
        DeclareLaunchArgument('use_sim_time', default_value='false', description='Use /clock (bag replay)'),
        DeclareLaunchArgument('fastdds_profile',
                              default_value=os.path.join(share, 'config', 'fastdds_large_messages.xml'),
                              description='Fast DDS profile for large messages ("" = keep environment)'),
        DeclareLaunchArgument('rviz', default_value='false', description='Start RViz with the depth/cloud view'),
    ]
    overrides = {'use_sim_time': LaunchConfiguration('use_sim_time')}
    node = Node(
        package='packnet_ros',
        executable='packnet_node',
        name='packnet_node',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'), overrides],
        remappings=[('image', LaunchConfiguration('image')),
                    ('camera_info', LaunchConfiguration('camera_info')),
                    ('odom', LaunchConfiguration('odom'))],
        output='screen',
        emulate_tty=True,
    )
    rviz = Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        arguments=['-d', os.path.join(share, 'config', 'packnet.rviz')],
        parameters=[overrides],
        condition=IfCondition(LaunchConfiguration('rviz')),
    )
    profile = SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', LaunchConfiguration('fastdds_profile'),
                                     condition=IfCondition(PythonExpression(
                                         ["'", LaunchConfiguration('fastdds_profile'), "' != ''"])))
    return LaunchDescription(args + [profile, node, rviz])
