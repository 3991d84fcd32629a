# Horizon's settings for this project: the dashboard against the all-in-one's Keystone v3, with
# only what the service has (compute, images, networks with subnets and ports, security groups,
# key pairs). No volumes (Cinder), object storage (Swift), orchestration (Heat), routers,
# floating IPs or other L3: the catalog does not name the services, and the settings below turn
# off what Horizon would otherwise ask Neutron and Glance for.
#
# scripts/horizon.sh loads this file as Horizon's openstack_dashboard/local/local_settings.py
# (a shim it writes there runs this file; Horizon's settings.py reads it halfway, before it
# derives the URLs, static paths and themes). Environment variables it reads, all set by
# scripts/horizon.sh:
#   NOVA_HORIZON_KEYSTONE_URL  Keystone v3 (default http://127.0.0.1:8774/identity/v3)
#   NOVA_HORIZON_STATE         where sessions, the generated secret key and logs live
#   NOVA_HORIZON_STATIC        collected and compressed static files
#   NOVA_HORIZON_SECRET_KEY    Django's SECRET_KEY (default: generated once into the state dir)
#   NOVA_HORIZON_LOG_HTTP      1: log every API request and response (keystoneauth, DEBUG)
import os

from django.utils.translation import gettext_lazy as _

from horizon.utils import secret_key as _secret_key

_STATE = os.environ.get('NOVA_HORIZON_STATE') or os.path.expanduser(
    '~/.cache/nova-horizon-state')
os.makedirs(os.path.join(_STATE, 'sessions'), exist_ok=True)

DEBUG = False
# Only the loopback names: Horizon is served on 127.0.0.1 (runserver rejects other hosts).
ALLOWED_HOSTS = ['127.0.0.1', 'localhost', '[::1]', '::1']

SECRET_KEY = os.environ.get('NOVA_HORIZON_SECRET_KEY') or \
    _secret_key.generate_or_read_from_file(os.path.join(_STATE, '.secret_key_store'))

# ---- identity -----------------------------------------------------------------------------
OPENSTACK_KEYSTONE_URL = os.environ.get('NOVA_HORIZON_KEYSTONE_URL',
                                        'http://127.0.0.1:8774/identity/v3')
OPENSTACK_API_VERSIONS = {
    'identity': 3,
    'image': 2,
    'compute': 2,
}
OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = 'Default'
OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'
OPENSTACK_KEYSTONE_MULTIDOMAIN_SUPPORT = False
OPENSTACK_KEYSTONE_FEDERATION_MANAGEMENT = False
WEBSSO_ENABLED = False
OPENSTACK_ENDPOINT_TYPE = 'publicURL'
# The service's tokens live an hour (auth.token_lifetime_s): the session no longer.
SESSION_TIMEOUT = 3600

# ---- sessions and caches: no memcached here -----------------------------------------------
# Sessions on disk (Horizon's default is memcached; signed cookies would hold the token and
# can outgrow a cookie). Cookies without `Secure`: the dashboard is served over plain http on
# the loopback.
SESSION_ENGINE = 'django.contrib.sessions.backends.file'
SESSION_FILE_PATH = os.path.join(_STATE, 'sessions')
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SESSION_COOKIE_HTTPONLY = True
CACHES = {
    'default': {'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'},
}

# ---- static files: collected and compressed offline by scripts/horizon.sh ------------------
STATIC_ROOT = os.environ.get('NOVA_HORIZON_STATIC') or os.path.join(_STATE, 'static')
COMPRESS_ENABLED = True
COMPRESS_OFFLINE = True
# One theme: every theme is compiled from SCSS at `compress` time.
AVAILABLE_THEMES = [('default', _('Default'), 'themes/default')]
DEFAULT_THEME = 'default'

# ---- what the service has -----------------------------------------------------------------
OPENSTACK_NEUTRON_NETWORK = {
    # No routers (and so no floating IPs, no L3, no port forwarding): the panels go.
    'enable_router': False,
    'enable_distributed_router': False,
    'enable_ha_router': False,
    'enable_fip_topology_check': False,
    # Neutron's quotas are served (networks, subnets, ports, security groups).
    'enable_quotas': True,
    'enable_ipv6': True,
    # No RBAC policies, no auto-allocated topology, no agents.
    'enable_rbac_policy': False,
    'enable_auto_allocated_network': False,
    'show_agents_column': False,
    # Provider networks name the hosts' networks; no segmentation.
    'supported_provider_types': ['flat'],
    'supported_vnic_types': ['normal'],
    'default_dns_nameservers': [],
    'physical_networks': [],
}
OPENSTACK_CINDER_FEATURES = {
    'enable_backup': False,
}
OPENSTACK_HYPERVISOR_FEATURES = {
    'can_set_mount_point': False,
    'can_set_password': False,
    'requires_keypair': False,
    'enable_quotas': True,
}
# The Launch Instance wizard: boot from an image only, no volumes. No scheduler hints and
# metadata steps (they read Glance's metadata definitions, which are not served).
LAUNCH_INSTANCE_DEFAULTS = {
    'config_drive': False,
    'create_volume': False,
    'hide_create_volume': True,
    'disable_image': False,
    'disable_instance_snapshot': False,
    'disable_volume': True,
    'disable_volume_snapshot': True,
    'enable_scheduler_hints': False,
    'enable_metadata': False,
    'enable_net_ports': True,
    'default_availability_zone': 'Any',
}
DEFAULT_BOOT_SOURCE = 'image'
# Image uploads go through Horizon (the image API's CORS is not configured for a browser).
HORIZON_IMAGES_UPLOAD_MODE = 'legacy'
IMAGES_ALLOW_LOCATION = False
OPENSTACK_USE_SIMPLE_TENANT_USAGE = True
# No placement service in the catalog: the admin's Hypervisors panel shows no resource
# providers.
SHOW_RESOURCE_PROVIDER_SUMMARY = False
OPENSTACK_INSTANCE_RETRIEVE_IP_ADDRESSES = True
CONSOLE_TYPE = None
SHOW_OPENRC_FILE = True
SHOW_OPENSTACK_CLOUDS_YAML = True
OPENSTACK_CLOUDS_YAML_NAME = 'nova-aio'

TIME_ZONE = 'UTC'
SITE_BRANDING = 'OpenStack Dashboard'
EMAIL_BACKEND = 'django.core.mail.backends.console.EmailBackend'

SECURITY_GROUP_RULES = {
    'all_tcp': {'name': _('All TCP'), 'ip_protocol': 'tcp', 'from_port': '1',
                'to_port': '65535'},
    'all_udp': {'name': _('All UDP'), 'ip_protocol': 'udp', 'from_port': '1',
                'to_port': '65535'},
    'all_icmp': {'name': _('All ICMP'), 'ip_protocol': 'icmp', 'from_port': '-1',
                 'to_port': '-1'},
    'ssh': {'name': 'SSH', 'ip_protocol': 'tcp', 'from_port': '22', 'to_port': '22'},
    'http': {'name': 'HTTP', 'ip_protocol': 'tcp', 'from_port': '80', 'to_port': '80'},
    'https': {'name': 'HTTPS', 'ip_protocol': 'tcp', 'from_port': '443', 'to_port': '443'},
}

# ---- logging: to stderr (scripts/horizon.sh sends it to its log file) ---------------------
# Off by default: the requests' bodies hold what users send (a server's admin password).
_HTTP_LEVEL = 'DEBUG' if os.environ.get('NOVA_HORIZON_LOG_HTTP', '0') == '1' else 'WARNING'
LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'formatters': {
        'console': {'format': '%(asctime)s %(levelname)s %(name)s %(message)s'},
    },
    'handlers': {
        'console': {'level': 'DEBUG', 'class': 'logging.StreamHandler',
                    'formatter': 'console'},
        'null': {'class': 'logging.NullHandler'},
    },
    'loggers': {
        'horizon': {'handlers': ['console'], 'level': 'INFO', 'propagate': False},
        'openstack_dashboard': {'handlers': ['console'], 'level': 'INFO',
                                'propagate': False},
        'openstack_auth': {'handlers': ['console'], 'level': 'INFO', 'propagate': False},
        'django': {'handlers': ['console'], 'level': 'INFO', 'propagate': False},
        'django.template': {'handlers': ['console'], 'level': 'INFO', 'propagate': False},
        # Every request Horizon makes of the APIs and the answer (tokens are hashed).
        'keystoneauth': {'handlers': ['console'], 'level': _HTTP_LEVEL, 'propagate': False},
        'novaclient': {'handlers': ['console'], 'level': _HTTP_LEVEL, 'propagate': False},
        'glanceclient': {'handlers': ['console'], 'level': _HTTP_LEVEL, 'propagate': False},
        'openstack': {'handlers': ['console'], 'level': 'INFO', 'propagate': False},
        'keystoneclient': {'handlers': ['console'], 'level': 'INFO', 'propagate': False},
        'oslo_policy': {'handlers': ['console'], 'level': 'WARNING', 'propagate': False},
        'django.db.backends': {'handlers': ['null'], 'propagate': False},
        'requests': {'handlers': ['null'], 'propagate': False},
        'urllib3': {'handlers': ['null'], 'propagate': False},
        'iso8601': {'handlers': ['null'], 'propagate': False},
    },
}
