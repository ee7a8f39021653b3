# -*- coding: utf-8 -*-
'''python-dbusmock template: BlueZ 5 with GATT, for VectorCare Gateway's BLE integration tests.

dbusmock's stock bluez5 template has no GATT objects and never sets ServicesResolved, which
bluez-async (under btleplug) waits for after Device1.Connect. This template serves what
bluez-async reads: Adapter1 (Address, AddressType, Name, Alias, Powered, Discovering),
Device1 (Address, AddressType, Paired, Connected, ServicesResolved, ...), GattService1 (UUID,
Primary), GattCharacteristic1 (UUID, Flags, Value, Notifying) and GattDescriptor1 (UUID), with
object paths service%04x/char%04x/desc%04x like bluetoothd's.

Tests play the device through the org.bluez.Mock interface on '/':
  AddAdapter(name, address) -> path          SetPowered(adapter, on)  (off = rfkill-blocked)
  AddDevice(adapter, address, name, uuids, rssi) -> path
  AddService(device, uuid) -> path           AddCharacteristic(service, uuid, flags, value) -> path
  PushValue(char, value)      a notification/indication; kept until the central subscribes
  Advertise(device)           one more advertisement (RSSI update) while discovering
  DropLink(device)            the link is lost (Connected and ServicesResolved go false)
  FailNext(path, method, error_name, message)   the next call of `method` on `path` fails
  SetStoredRecords(measurement_char, racp_char, records)   a RACP record store, keyed by
                              sequence number (Glucose) or time offset (CGM)
  StoredSequences(racp_char) -> aq           ConnectCount(device) -> u   Writes(char) -> aay
  RequirePairing(device, passkey)  subscribing pairs first, asking the default Agent1 for the
                                   passkey (-1: Just Works)      PairingLog(device) -> as
  Agents() -> as                   registered agents ("path capability")
'''

from xml.etree import ElementTree

import dbus

from dbusmock import OBJECT_MANAGER_IFACE, mockobject

BUS_NAME = 'org.bluez'
MAIN_OBJ = '/'
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

MOCK_IFACE = 'org.bluez.Mock'
ADAPTER_IFACE = 'org.bluez.Adapter1'
DEVICE_IFACE = 'org.bluez.Device1'
SERVICE_IFACE = 'org.bluez.GattService1'
CHAR_IFACE = 'org.bluez.GattCharacteristic1'
DESC_IFACE = 'org.bluez.GattDescriptor1'
AGENT_MANAGER_IFACE = 'org.bluez.AgentManager1'

CCCD_UUID = '00002902-0000-1000-8000-00805f9b34fb'


# bluez-async parses Introspect output with serde-xml-rs and needs every <interface> before the
# child <node>s; dbusmock appends property-only interfaces after them. Reorder.
_ORIGINAL_INTROSPECT = mockobject.DBusMockObject.Introspect


def _introspect_interfaces_first(self, object_path, connection):
    xml = _ORIGINAL_INTROSPECT(self, object_path, connection)
    tree = ElementTree.fromstring(xml)
    nodes = [child for child in list(tree) if child.tag == 'node']
    for node in nodes:
        tree.remove(node)
        tree.append(node)
    return ElementTree.tostring(tree, encoding='unicode', method='xml')


_introspect_interfaces_first.__dict__.update(_ORIGINAL_INTROSPECT.__dict__)
mockobject.DBusMockObject.Introspect = _introspect_interfaces_first


# bluez-async powers the adapter on before every discovery (Set Powered true). A test's
# "adapter off" models rfkill: such a Set fails with org.bluez.Error.Blocked until SetPowered.
_ORIGINAL_SET = mockobject.DBusMockObject.Set


def _set_unless_blocked(self, interface_name, property_name, value, *args, **kwargs):
    if (interface_name == ADAPTER_IFACE and property_name == 'Powered' and bool(value)
            and getattr(self, 'blocked', False)):
        raise _error('org.bluez.Error.Blocked', 'Blocked through rfkill')
    return _ORIGINAL_SET(self, interface_name, property_name, value, *args, **kwargs)


_set_unless_blocked.__dict__.update(_ORIGINAL_SET.__dict__)
mockobject.DBusMockObject.Set = _set_unless_blocked


def _error(name, message):
    return dbus.exceptions.DBusException(message, name=name)


def _maybe_fail(obj, method):
    scripted = getattr(obj, 'failures', {}).get(method)
    if scripted:
        name, message = scripted.pop(0)
        raise _error(name, message)


def _changed(obj, iface, props):
    for key, value in props.items():
        obj.props[iface][key] = value
    obj.EmitSignal(dbus.PROPERTIES_IFACE, 'PropertiesChanged', 'sa{sv}as', [
        iface, dbus.Dictionary(props, signature='sv'), dbus.Array([], signature='s')])


def _adapter_of(path):
    parts = path.split('/')
    return mockobject.objects['/'.join(parts[:4])]


def _device_of(path):
    parts = path.split('/')
    return mockobject.objects['/'.join(parts[:5])]


def _powered(adapter):
    return bool(adapter.props[ADAPTER_IFACE]['Powered'])


def _children(prefix, suffix_start):
    return [p for p in sorted(mockobject.objects)
            if p.startswith(prefix + '/') and p[len(prefix) + 1:].startswith(suffix_start)
            and '/' not in p[len(prefix) + 1:]]


# ---- agent manager (module-level methods: dbusmock puts them on every mock object's class, so
# /org/bluez answers them; sender_keyword tells who the agent is) ---------------------------

AGENTS = {'registered': {}, 'default': None}


@dbus.service.method(AGENT_MANAGER_IFACE, in_signature='os', out_signature='',
                     sender_keyword='sender')
def RegisterAgent(_manager, agent_path, capability, sender=None):
    if capability not in ('DisplayOnly', 'DisplayYesNo', 'KeyboardOnly', 'NoInputNoOutput',
                          'KeyboardDisplay'):
        raise _error('org.bluez.Error.InvalidArguments', 'Unsupported capability')
    AGENTS['registered'][(str(sender), str(agent_path))] = str(capability)


@dbus.service.method(AGENT_MANAGER_IFACE, in_signature='o', out_signature='',
                     sender_keyword='sender')
def RequestDefaultAgent(_manager, agent_path, sender=None):
    key = (str(sender), str(agent_path))
    if key not in AGENTS['registered']:
        raise _error('org.bluez.Error.DoesNotExist', 'Does Not Exist')
    AGENTS['default'] = key


@dbus.service.method(AGENT_MANAGER_IFACE, in_signature='o', out_signature='',
                     sender_keyword='sender')
def UnregisterAgent(_manager, agent_path, sender=None):
    key = (str(sender), str(agent_path))
    if AGENTS['registered'].pop(key, None) is None:
        raise _error('org.bluez.Error.DoesNotExist', 'Does Not Exist')
    if AGENTS['default'] == key:
        AGENTS['default'] = None


# ---- adapter ---------------------------------------------------------------------------------

def StartDiscovery(adapter):
    _maybe_fail(adapter, 'StartDiscovery')
    if not _powered(adapter):
        raise _error('org.bluez.Error.NotReady', 'Resource Not Ready')
    _changed(adapter, ADAPTER_IFACE, {'Discovering': dbus.Boolean(True, variant_level=1)})
    # Every advertising device is "seen" again: an RSSI update is what btleplug reports.
    for path in _children(adapter.path, 'dev_'):
        device = mockobject.objects[path]
        rssi = device.props[DEVICE_IFACE]['RSSI']
        _changed(device, DEVICE_IFACE, {'RSSI': dbus.Int16(rssi, variant_level=1)})


def StopDiscovery(adapter):
    _maybe_fail(adapter, 'StopDiscovery')
    _changed(adapter, ADAPTER_IFACE, {'Discovering': dbus.Boolean(False, variant_level=1)})


def SetDiscoveryFilter(adapter, _filter):
    pass


def RemoveDevice(adapter, path):
    _maybe_fail(adapter, 'RemoveDevice')
    if str(path) not in mockobject.objects:
        raise _error('org.bluez.Error.DoesNotExist', 'Does Not Exist')
    adapter.removed = getattr(adapter, 'removed', 0) + 1
    # Like bluetoothd's cache, the device comes back when it advertises again; keep the object.
    device = mockobject.objects[str(path)]
    if device.props[DEVICE_IFACE]['Connected']:
        _drop_link(device)


def _add_adapter_object(name, address):
    path = '/org/bluez/' + name
    props = {
        'Address': dbus.String(address, variant_level=1),
        'AddressType': dbus.String('public', variant_level=1),
        'Name': dbus.String('vectorcare-test', variant_level=1),
        'Alias': dbus.String('vectorcare-test', variant_level=1),
        'Powered': dbus.Boolean(True, variant_level=1),
        'Discovering': dbus.Boolean(False, variant_level=1),
        'Discoverable': dbus.Boolean(False, variant_level=1),
        'Pairable': dbus.Boolean(True, variant_level=1),
        'Modalias': dbus.String('usb:v1D6Bp0246d0540', variant_level=1),
        'UUIDs': dbus.Array([], signature='s', variant_level=1),
    }
    root = mockobject.objects['/']
    root.AddObject(path, ADAPTER_IFACE, props, [
        ('StartDiscovery', '', '', StartDiscovery),
        ('StopDiscovery', '', '', StopDiscovery),
        ('SetDiscoveryFilter', 'a{sv}', '', SetDiscoveryFilter),
        ('RemoveDevice', 'o', '', RemoveDevice),
    ])
    adapter = mockobject.objects[path]
    adapter.failures = {}
    root.EmitSignal(OBJECT_MANAGER_IFACE, 'InterfacesAdded', 'oa{sa{sv}}',
                    [dbus.ObjectPath(path), {ADAPTER_IFACE: props}])
    return path


# ---- device ----------------------------------------------------------------------------------

def _drop_link(device):
    for path in sorted(mockobject.objects):
        if path.startswith(device.path + '/') and CHAR_IFACE in mockobject.objects[path].props:
            char = mockobject.objects[path]
            if char.props[CHAR_IFACE]['Notifying']:
                _changed(char, CHAR_IFACE, {'Notifying': dbus.Boolean(False, variant_level=1)})
    _changed(device, DEVICE_IFACE, {
        'Connected': dbus.Boolean(False, variant_level=1),
        'ServicesResolved': dbus.Boolean(False, variant_level=1),
    })


def Connect(device):
    _maybe_fail(device, 'Connect')
    if not _powered(_adapter_of(device.path)):
        raise _error('org.bluez.Error.NotReady', 'Resource Not Ready')
    if device.props[DEVICE_IFACE]['Connected']:
        return
    device.connects += 1
    # bluetoothd resolves services right after connecting (cached GATT database).
    _changed(device, DEVICE_IFACE, {
        'Connected': dbus.Boolean(True, variant_level=1),
        'ServicesResolved': dbus.Boolean(True, variant_level=1),
    })


def Disconnect(device):
    _maybe_fail(device, 'Disconnect')
    if device.props[DEVICE_IFACE]['Connected']:
        _drop_link(device)


def Pair(device):
    _maybe_fail(device, 'Pair')
    _changed(device, DEVICE_IFACE, {'Paired': dbus.Boolean(True, variant_level=1)})


# ---- GATT ------------------------------------------------------------------------------------

def _require_connected(obj):
    device = _device_of(obj.path)
    if not device.props[DEVICE_IFACE]['Connected']:
        raise _error('org.bluez.Error.Failed', 'Not connected')
    return device


def _deliver(char, value):
    '''Sends a notification now if subscribed on a live link; else keeps it on the device.'''
    device = _device_of(char.path)
    if char.props[CHAR_IFACE]['Notifying'] and device.props[DEVICE_IFACE]['Connected']:
        _changed(char, CHAR_IFACE, {'Value': dbus.Array(value, signature='y', variant_level=1)})
    else:
        char.pending.append(list(value))


def ReadValue(char, _options):
    _maybe_fail(char, 'ReadValue')
    _require_connected(char)
    return dbus.Array(char.props[CHAR_IFACE]['Value'], signature='y')


def WriteValue(char, value, _options):
    _maybe_fail(char, 'WriteValue')
    _require_connected(char)
    value = [int(b) for b in value]
    char.writes.append(value)
    if getattr(char, 'racp', None) is not None:
        _racp(char, value)
    else:
        char.props[CHAR_IFACE]['Value'] = dbus.Array(value, signature='y')


def _pair(device):
    '''What bluetoothd does on an ATT "insufficient authentication" answer: pair, asking the
    default agent for the passkey when the device wants one.'''
    passkey = device.pairing
    default = AGENTS['default']
    if default is None:
        device.pairing_log.append('no agent')
        raise _error('org.bluez.Error.NotPermitted', 'Insufficient authentication')
    sender, agent_path = default
    if passkey >= 0:
        try:
            given = device.connection.call_blocking(
                sender, agent_path, 'org.bluez.Agent1', 'RequestPasskey', 'o',
                [dbus.ObjectPath(device.path)], timeout=10)
        except dbus.exceptions.DBusException as e:
            device.pairing_log.append('rejected: ' + str(e.get_dbus_name()))
            raise _error('org.bluez.Error.NotPermitted', 'Insufficient authentication') from e
        device.pairing_log.append(f'passkey {int(given)}')
        if int(given) != passkey:
            raise _error('org.bluez.Error.NotPermitted', 'Insufficient authentication')
    else:
        device.pairing_log.append('just works')
    _changed(device, DEVICE_IFACE, {'Paired': dbus.Boolean(True, variant_level=1)})


def StartNotify(char):
    _maybe_fail(char, 'StartNotify')
    device = _require_connected(char)
    if device.pairing is not None and not device.props[DEVICE_IFACE]['Paired']:
        _pair(device)
    _changed(char, CHAR_IFACE, {'Notifying': dbus.Boolean(True, variant_level=1)})
    waiting, char.pending = char.pending, []
    for value in waiting:
        _deliver(char, value)


def StopNotify(char):
    _maybe_fail(char, 'StopNotify')
    _changed(char, CHAR_IFACE, {'Notifying': dbus.Boolean(False, variant_level=1)})


# ---- Record Access Control Point (Glucose-style: filter type 0x01 = sequence number) -----------

def _racp(char, request):
    store = char.racp
    measurement = mockobject.objects[store['measurement']]
    op = request[0] if request else 0
    operator = request[1] if len(request) > 1 else 0

    def selected():
        records = sorted(store['records'].items())
        if operator == 1:
            return records
        if operator in (2, 3) and len(request) >= 5 and request[2] == 1:
            bound = request[3] | (request[4] << 8)
            if operator == 2:
                return [r for r in records if r[0] <= bound]
            return [r for r in records if r[0] >= bound]
        return None

    def respond(code):
        _deliver(char, [6, 0, op, code])

    chosen = selected()
    if op not in (1, 2, 4):
        respond(2)
    elif chosen is None:
        respond(3 if operator not in (1, 2, 3) else 5)
    elif op == 4:
        _deliver(char, [5, 0, len(chosen) & 0xff, len(chosen) >> 8])
    elif not chosen:
        respond(6)
    elif op == 1:
        for _seq, record in chosen:
            _deliver(measurement, record)
        respond(1)
    else:
        for seq, _record in chosen:
            del store['records'][seq]
        respond(1)


# ---- control interface -----------------------------------------------------------------------

@dbus.service.method(MOCK_IFACE, in_signature='ss', out_signature='o')
def AddAdapter(_self, name, address):
    return dbus.ObjectPath(_add_adapter_object(name, address))


@dbus.service.method(MOCK_IFACE, in_signature='sssasn', out_signature='o')
def AddDevice(_self, adapter_name, address, name, uuids, rssi):
    adapter_path = '/org/bluez/' + adapter_name
    path = adapter_path + '/dev_' + address.replace(':', '_').upper()
    props = {
        'Address': dbus.String(address.upper(), variant_level=1),
        'AddressType': dbus.String('public', variant_level=1),
        'Name': dbus.String(name, variant_level=1),
        'Alias': dbus.String(name, variant_level=1),
        'Adapter': dbus.ObjectPath(adapter_path, variant_level=1),
        'Paired': dbus.Boolean(False, variant_level=1),
        'Trusted': dbus.Boolean(False, variant_level=1),
        'Blocked': dbus.Boolean(False, variant_level=1),
        'LegacyPairing': dbus.Boolean(False, variant_level=1),
        'Connected': dbus.Boolean(False, variant_level=1),
        'ServicesResolved': dbus.Boolean(False, variant_level=1),
        'RSSI': dbus.Int16(rssi, variant_level=1),
        'UUIDs': dbus.Array([str(u) for u in uuids], signature='s', variant_level=1),
    }
    root = mockobject.objects['/']
    root.AddObject(path, DEVICE_IFACE, props, [
        ('Connect', '', '', Connect),
        ('Disconnect', '', '', Disconnect),
        ('Pair', '', '', Pair),
    ])
    device = mockobject.objects[path]
    device.failures = {}
    device.connects = 0
    device.pairing = None
    device.pairing_log = []
    device.next_handle = 0x000a
    root.EmitSignal(OBJECT_MANAGER_IFACE, 'InterfacesAdded', 'oa{sa{sv}}',
                    [dbus.ObjectPath(path), {DEVICE_IFACE: props}])
    return dbus.ObjectPath(path)


def _next_handle(device):
    handle = device.next_handle
    device.next_handle += 1
    return handle


@dbus.service.method(MOCK_IFACE, in_signature='os', out_signature='o')
def AddService(_self, device_path, uuid):
    device = mockobject.objects[str(device_path)]
    path = f'{device_path}/service{_next_handle(device):04x}'
    props = {
        'UUID': dbus.String(uuid, variant_level=1),
        'Primary': dbus.Boolean(True, variant_level=1),
        'Device': dbus.ObjectPath(device_path, variant_level=1),
        'Includes': dbus.Array([], signature='o', variant_level=1),
    }
    root = mockobject.objects['/']
    root.AddObject(path, SERVICE_IFACE, props, [])
    root.EmitSignal(OBJECT_MANAGER_IFACE, 'InterfacesAdded', 'oa{sa{sv}}',
                    [dbus.ObjectPath(path), {SERVICE_IFACE: props}])
    return dbus.ObjectPath(path)


@dbus.service.method(MOCK_IFACE, in_signature='osasay', out_signature='o')
def AddCharacteristic(_self, service_path, uuid, flags, value):
    device = _device_of(str(service_path))
    path = f'{service_path}/char{_next_handle(device):04x}'
    props = {
        'UUID': dbus.String(uuid, variant_level=1),
        'Service': dbus.ObjectPath(service_path, variant_level=1),
        'Flags': dbus.Array([str(f) for f in flags], signature='s', variant_level=1),
        'Value': dbus.Array([int(b) for b in value], signature='y', variant_level=1),
        'Notifying': dbus.Boolean(False, variant_level=1),
    }
    root = mockobject.objects['/']
    root.AddObject(path, CHAR_IFACE, props, [
        ('ReadValue', 'a{sv}', 'ay', ReadValue),
        ('WriteValue', 'aya{sv}', '', WriteValue),
        ('StartNotify', '', '', StartNotify),
        ('StopNotify', '', '', StopNotify),
    ])
    char = mockobject.objects[path]
    char.failures = {}
    char.pending = []
    char.writes = []
    char.racp = None
    root.EmitSignal(OBJECT_MANAGER_IFACE, 'InterfacesAdded', 'oa{sa{sv}}',
                    [dbus.ObjectPath(path), {CHAR_IFACE: props}])
    if 'notify' in flags or 'indicate' in flags:
        desc_path = f'{path}/desc{_next_handle(device):04x}'
        desc_props = {
            'UUID': dbus.String(CCCD_UUID, variant_level=1),
            'Characteristic': dbus.ObjectPath(path, variant_level=1),
        }
        root.AddObject(desc_path, DESC_IFACE, desc_props, [])
    return dbus.ObjectPath(path)


@dbus.service.method(MOCK_IFACE, in_signature='oay', out_signature='')
def PushValue(_self, char_path, value):
    _deliver(mockobject.objects[str(char_path)], [int(b) for b in value])


@dbus.service.method(MOCK_IFACE, in_signature='o', out_signature='')
def Advertise(_self, device_path):
    '''One more advertisement seen by a running discovery (an RSSI update, as bluetoothd sends).'''
    device = mockobject.objects[str(device_path)]
    if _adapter_of(device.path).props[ADAPTER_IFACE]['Discovering']:
        rssi = device.props[DEVICE_IFACE]['RSSI']
        _changed(device, DEVICE_IFACE, {'RSSI': dbus.Int16(rssi, variant_level=1)})


@dbus.service.method(MOCK_IFACE, in_signature='o', out_signature='')
def DropLink(_self, device_path):
    _drop_link(mockobject.objects[str(device_path)])


@dbus.service.method(MOCK_IFACE, in_signature='sb', out_signature='')
def SetPowered(_self, adapter_name, powered):
    adapter = mockobject.objects['/org/bluez/' + adapter_name]
    adapter.blocked = not powered
    if not powered:
        for path in _children(adapter.path, 'dev_'):
            device = mockobject.objects[path]
            if device.props[DEVICE_IFACE]['Connected']:
                _drop_link(device)
        _changed(adapter, ADAPTER_IFACE, {'Discovering': dbus.Boolean(False, variant_level=1)})
    _changed(adapter, ADAPTER_IFACE, {'Powered': dbus.Boolean(powered, variant_level=1)})


@dbus.service.method(MOCK_IFACE, in_signature='ssss', out_signature='')
def FailNext(_self, path, method, error_name, message):
    obj = mockobject.objects[str(path)]
    obj.failures.setdefault(str(method), []).append((str(error_name), str(message)))


@dbus.service.method(MOCK_IFACE, in_signature='ooaay', out_signature='')
def SetStoredRecords(_self, measurement_path, racp_path, records):
    records = [[int(b) for b in r] for r in records]
    measurement = mockobject.objects[str(measurement_path)]
    if measurement.props[CHAR_IFACE]['UUID'].startswith('00002aa7'):
        # CGM Measurement: size, flags, glucose (SFLOAT), then the time offset (u16 LE).
        key = lambda r: r[4] | (r[5] << 8)  # noqa: E731
    else:
        # Glucose Measurement: flags (1 byte), then the sequence number (u16 LE).
        key = lambda r: r[1] | (r[2] << 8)  # noqa: E731
    mockobject.objects[str(racp_path)].racp = {
        'measurement': str(measurement_path),
        'records': {key(r): r for r in records},
    }


@dbus.service.method(MOCK_IFACE, in_signature='o', out_signature='aq')
def StoredSequences(_self, racp_path):
    store = mockobject.objects[str(racp_path)].racp or {'records': {}}
    return dbus.Array(sorted(store['records']), signature='q')


@dbus.service.method(MOCK_IFACE, in_signature='o', out_signature='u')
def ConnectCount(_self, device_path):
    return dbus.UInt32(mockobject.objects[str(device_path)].connects)


@dbus.service.method(MOCK_IFACE, in_signature='o', out_signature='aay')
def Writes(_self, char_path):
    return dbus.Array([dbus.Array(w, signature='y') for w in
                       mockobject.objects[str(char_path)].writes], signature='ay')


@dbus.service.method(MOCK_IFACE, in_signature='s', out_signature='u')
def RemovedCount(_self, adapter_name):
    return dbus.UInt32(getattr(mockobject.objects['/org/bluez/' + adapter_name], 'removed', 0))


@dbus.service.method(MOCK_IFACE, in_signature='oi', out_signature='')
def RequirePairing(_self, device_path, passkey):
    '''Subscribing needs a paired link; passkey -1 = Just Works.'''
    mockobject.objects[str(device_path)].pairing = int(passkey)


@dbus.service.method(MOCK_IFACE, in_signature='o', out_signature='as')
def PairingLog(_self, device_path):
    return dbus.Array(mockobject.objects[str(device_path)].pairing_log, signature='s')


@dbus.service.method(MOCK_IFACE, in_signature='', out_signature='as')
def Agents(_self):
    return dbus.Array([f'{path} {cap}' for (_s, path), cap in AGENTS['registered'].items()],
                      signature='s')


def load(mock, _parameters):
    mock.AddObject('/org/bluez', AGENT_MANAGER_IFACE, {}, [])


# ---- peripheral role: GattManager1 and LEAdvertisingManager1 (the simulator's `ble` target) ----
# Like bluetoothd, RegisterApplication reads the application's object tree from the caller
# (ObjectManager.GetManagedObjects) before it answers, and RegisterAdvertisement reads the
# advertisement's properties. Tests then inspect what was registered.

GATT_MANAGER_IFACE = 'org.bluez.GattManager1'
LE_ADV_MANAGER_IFACE = 'org.bluez.LEAdvertisingManager1'
LE_ADV_IFACE = 'org.bluez.LEAdvertisement1'
GATT_APPS = {}
ADVERTISEMENTS = {}


@dbus.service.method(GATT_MANAGER_IFACE, in_signature='oa{sv}', out_signature='',
                     sender_keyword='sender')
def RegisterApplication(manager, app_path, _options, sender=None):
    app = manager.connection.get_object(sender, app_path, introspect=False)
    objects = app.GetManagedObjects(dbus_interface=OBJECT_MANAGER_IFACE)
    services = {}
    for path, ifaces in objects.items():
        if SERVICE_IFACE in ifaces:
            props = ifaces[SERVICE_IFACE]
            services[str(path)] = (str(props['UUID']), bool(props.get('Primary', False)), [])
    for path, ifaces in objects.items():
        if CHAR_IFACE in ifaces:
            props = ifaces[CHAR_IFACE]
            service = services.get(str(props['Service']))
            if service is None:
                raise _error('org.bluez.Error.InvalidArguments', 'characteristic without service')
            service[2].append((str(path), str(props['UUID']), [str(f) for f in props['Flags']]))
    if not services:
        raise _error('org.bluez.Error.InvalidArguments', 'No service in the application')
    GATT_APPS[(str(sender), str(app_path))] = services


@dbus.service.method(GATT_MANAGER_IFACE, in_signature='o', out_signature='',
                     sender_keyword='sender')
def UnregisterApplication(_manager, app_path, sender=None):
    if GATT_APPS.pop((str(sender), str(app_path)), None) is None:
        raise _error('org.bluez.Error.DoesNotExist', 'Does Not Exist')


@dbus.service.method(LE_ADV_MANAGER_IFACE, in_signature='oa{sv}', out_signature='',
                     sender_keyword='sender')
def RegisterAdvertisement(manager, adv_path, _options, sender=None):
    adv = manager.connection.get_object(sender, adv_path, introspect=False)
    props = adv.GetAll(LE_ADV_IFACE, dbus_interface=dbus.PROPERTIES_IFACE)
    ADVERTISEMENTS[(str(sender), str(adv_path))] = (
        str(props.get('Type', '')), str(props.get('LocalName', '')),
        [str(u) for u in props.get('ServiceUUIDs', [])])


@dbus.service.method(LE_ADV_MANAGER_IFACE, in_signature='o', out_signature='',
                     sender_keyword='sender')
def UnregisterAdvertisement(_manager, adv_path, sender=None):
    ADVERTISEMENTS.pop((str(sender), str(adv_path)), None)


@dbus.service.method(MOCK_IFACE, in_signature='', out_signature='a(ssssbsas)')
def GattApplications(_self):
    '''(client bus name, app path, service uuid, char object path, primary, char uuid, flags).'''
    rows = []
    for (sender, app), services in sorted(GATT_APPS.items()):
        for (uuid, primary, chars) in services.values():
            for (path, cuuid, flags) in chars:
                rows.append((sender, app, uuid, path, primary, cuuid,
                             dbus.Array(flags, signature='s')))
    return dbus.Array(rows, signature='(ssssbsas)')


@dbus.service.method(MOCK_IFACE, in_signature='', out_signature='a(ssas)')
def Advertisements(_self):
    '''(type, local name, service uuids) of every registered advertisement.'''
    return dbus.Array([(t, n, dbus.Array(u, signature='s')) for t, n, u in ADVERTISEMENTS.values()],
                      signature='(ssas)')
