"""Artist tab: signing keys — register, see fingerprints, revoke; how to sign uploads."""

from __future__ import annotations

import gradio as gr

from mimicsafe import keys as keys_service
from mimicsafe.context import Instance
from ownership.signatures import MAX_KEY_BYTES
from ownership.sshsig import UPLOAD_NAMESPACE
from ui.files import read_uploads
from ui.guard import refusals, require_artist
from ui.markup import plain
from ui.tabs import Panel, table, when

HEADERS = ["Fingerprint", "Comment", "Registered", "Status"]

INSTRUCTIONS = """
**1. Make a key** (once, on your computer): `mimicsafe keys generate --out ~/.mimicsafe` writes a private
key (keep it secret, never upload it) and `mimicsafe_ed25519.pub`. Paste the `.pub` file's line below —
or the line of an OpenSSH ed25519 key (`~/.ssh/id_ed25519.pub`).

**2. Sign your images** before uploading them:

    mimicsafe sign --key ~/.mimicsafe/mimicsafe_ed25519 --artist {username} *.png --out manifest.json

then upload the images together with `manifest.json` on the **Uploads** tab.

**Or sign with OpenSSH**, one file at a time:

    ssh-keygen -Y sign -n {namespace} -f ~/.ssh/id_ed25519 picture.png

which writes `picture.png.sig`; upload it beside `picture.png`.

If a private key may have leaked, revoke it here: signatures made with it stop counting at once.
"""


def build(instance: Instance) -> Panel:
    with gr.Tab("Keys", id="keys") as tab:
        instructions = gr.Markdown()
        with gr.Row(equal_height=False):
            with gr.Column(min_width=320):
                key_text = gr.Textbox(label="Public key", lines=3,
                                      placeholder="ssh-ed25519 AAAA… (the line of your .pub file)")
                key_file = gr.File(label="…or the .pub file", file_types=[".pub", ".txt"], type="filepath")
                register = gr.Button("Register key", variant="primary")
            with gr.Column(min_width=320):
                empty = gr.Markdown()
                keys_table = gr.Dataframe(headers=HEADERS, label="Your keys", interactive=False, wrap=True)
                revoke_choice = gr.Dropdown(label="Key to revoke", choices=[], allow_custom_value=True)
                revoke = gr.Button("Revoke key", variant="stop")
        message = gr.Markdown()

    def view(username: str) -> tuple:
        with instance.reading() as session:
            keys = keys_service.list_keys(session=session, username=username)
            rows = [[k.fingerprint, k.comment, when(k.created_at),
                     "revoked " + when(k.revoked_at) if k.revoked_at else "active"] for k in keys]
            active = [k.fingerprint for k in keys if k.revoked_at is None]
        hint = "" if keys else "_No keys yet. Make one as described above and register its public half._"
        return table(rows, HEADERS), gr.update(choices=active, value=None), hint

    @refusals
    def list_keys(request: gr.Request) -> tuple:
        return view(require_artist(instance, request).username)

    @refusals
    def register_key(text: str, file: str | None, request: gr.Request) -> tuple:
        who = require_artist(instance, request)
        uploaded = read_uploads(file, max_bytes=MAX_KEY_BYTES)
        public_key = uploaded[0].data if uploaded else (text or "").strip().encode()
        if not public_key:
            raise gr.Error("Paste your public key or choose its .pub file.", print_exception=False)
        with instance.transaction() as session:
            key = keys_service.register_key(session=session, username=who.username, public_key_text=public_key,
                                            actor=who.username)
            fingerprint = key.fingerprint
        return (f"Registered key `{fingerprint}`.", "", None, *view(who.username))

    @refusals
    def revoke_key(fingerprint: str | None, request: gr.Request) -> tuple:
        who = require_artist(instance, request)
        if not fingerprint:
            raise gr.Error("Choose the key to revoke.", print_exception=False)
        with instance.transaction() as session:
            keys_service.revoke_key(session=session, username=who.username, fingerprint=fingerprint,
                                    actor=who.username)
        return (f"Revoked {plain(fingerprint)}: signatures made with it no longer count.", *view(who.username))

    outputs = [keys_table, revoke_choice, empty]
    register.click(register_key, [key_text, key_file], [message, key_text, key_file, *outputs],
                   api_name="artist_keys_register")
    revoke.click(revoke_key, [revoke_choice], [message, *outputs], api_name="artist_keys_revoke")
    tab.select(list_keys, None, outputs, api_name="artist_keys_list")
    return Panel(outputs=[instructions, *outputs],
                 fill=lambda who: (INSTRUCTIONS.format(username=who.username, namespace=UPLOAD_NAMESPACE),
                                   *view(who.username)))
