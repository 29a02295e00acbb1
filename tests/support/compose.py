"""The two-service compose file the Docker API tests bring up (as root and as a user): a web
server with a port on 127.0.0.1 and a client that reaches it by its service name, on a network
of their own, sharing a named volume."""

COMPOSE = """version: "3.8"
services:
  web:
    image: busybox
    command:
      - sh
      - -c
      - mkdir -p /www && echo hello-compose > /www/index.html && echo web-started && exec httpd -f -p 80 -h /www
    ports:
      - "127.0.0.1:{port}:80"
    volumes:
      - data:/data
    networks: [back]
  client:
    image: busybox
    command: ["sh", "-c", "until wget -qO /data/got http://web/; do sleep 0.2; done; cat /data/got; exec sleep 60"]
    volumes:
      - data:/data
    networks: [back]
    depends_on: [web]
volumes:
  data:
networks:
  back:
"""
