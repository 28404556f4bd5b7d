"""The SSH gateway: another edge beside the HTTP API (jobd/api/), on one port of its own,
built on asyncssh. A client connects as user `<run id or job name>` with one of that job's
keys and gets a shell or a command (jobd/ssh/session.py), sftp and OpenSSH 9's scp, which
speaks sftp (the same session, piped to the runtime's file helper), and `ssh -L` into the
container (jobd/ssh/forward.py). Who is let in is the service's to say (jobd/services/ssh.py);
the gateway only carries bytes. The listener and its host key: jobd/ssh/gateway.py."""
