"""The floor for any IMAP client on this machine: one TLS connection that asks for every body
of the given folders (pipelined UID FETCH 1:*, as mailfleet does) and only reads the bytes,
parsing and storing nothing. What it takes is the server's and the TLS's share of a sync.

    read-floor.py ADDRESS PASSWORD CA_FILE FOLDER...    (password on the command line: bench only)
"""
import socket
import ssl
import sys
import time

address, password, ca_file, folders = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
context = ssl.create_default_context(cafile=ca_file)
started = time.time()
sock = context.wrap_socket(socket.create_connection(("127.0.0.1", 993)), server_hostname="localhost")
commands = f'a LOGIN "{address}" "{password}"\r\n'
for i, folder in enumerate(folders):
    commands += f"s{i} EXAMINE {folder}\r\nf{i} UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])\r\n"
commands += "z LOGOUT\r\n"
sock.sendall(commands.encode())
buffer = bytearray(1 << 18)
total = 0
tail = b""
while True:
    n = sock.recv_into(buffer)
    if not n:
        break
    total += n
    tail = (tail + bytes(buffer[:n]))[-4096:]
if b"z OK" not in tail:
    sys.exit(f"the server did not finish: {tail[-200:]!r}")
print(f"{time.time() - started:.2f} {total}")
