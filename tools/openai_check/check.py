"""tessera serve against the official OpenAI Python client: models, text, streaming with
usage, an inline image and audio (when the model takes them) or the 400 that says it does not,
and the errors the client maps to its exception types. Prints one line per check; exit 1 on
any failure."""
import argparse
import base64
import sys

import openai

failures = 0


def check(name, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)))
    if not ok:
        failures += 1


def data_uri(path, mime):
    with open(path, "rb") as f:
        return "data:%s;base64,%s" % (mime, base64.b64encode(f.read()).decode())


def text_checks(client, model):
    r = client.chat.completions.create(
        model=model, max_tokens=16, temperature=0, seed=1,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}])
    c = r.choices[0]
    check("text completion", isinstance(c.message.content, str) and c.message.role == "assistant"
          and c.finish_reason in ("stop", "length") and r.usage.completion_tokens <= 16
          and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r)

    text, finish, usage, n = "", None, None, 0
    for chunk in client.chat.completions.create(
            model=model, max_tokens=16, temperature=0, seed=1, stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]):
        n += 1
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    check("streaming", finish in ("stop", "length") and usage is not None and n >= 3, (finish, usage, n))
    check("stream equals non-stream (greedy)", text == c.message.content, (text, c.message.content))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--audio", required=True)
    a = ap.parse_args()
    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0)

    models = client.models.list().data
    check("models.list", len(models) == 1, models)
    model = models[0].id
    modalities = getattr(models[0], "modalities", None) or (models[0].model_extra or {}).get("modalities", [])
    print("     model %s takes %s" % (model, ", ".join(modalities)))
    check("models.retrieve", client.models.retrieve(model).id == model)
    try:
        client.models.retrieve("no-such-model")
        check("unknown model is a 404", False, "found")
    except openai.NotFoundError as e:
        check("unknown model is a 404", e.status_code == 404, e)

    try:
        text_checks(client, model)
    except openai.APIStatusError as e:
        if e.status_code != 501:
            raise
        print("skip text checks: the model answers 501 for text-only chats (%s)" % e.message)

    img_msg = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_uri(a.image, "image/png"), "detail": "auto"}},
        {"type": "text", "text": "What is in this picture?"}]}]
    aud_msg = [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(open(a.audio, "rb").read()).decode(),
                                                "format": "wav"}},
        {"type": "text", "text": "What do you hear?"}]}]
    for kind, msgs in (("image", img_msg), ("audio", aud_msg)):
        try:
            r = client.chat.completions.create(model=model, max_tokens=8, messages=msgs)
            check(kind + " completion", kind in modalities and isinstance(r.choices[0].message.content, str), r)
        except openai.BadRequestError as e:
            err = e.body or {}
            check(kind + " refused: the model takes none", kind not in modalities
                  and err.get("code") == "unsupported_media" and err.get("param") == "messages[0].content[0]", e)
        except openai.APIStatusError as e:
            if e.status_code != 501:
                raise
            print("skip %s: the model answers 501 (%s)" % (kind, e.message))

    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], temperature=5)
        check("temperature 5 is a 400", False, "accepted")
    except openai.BadRequestError as e:
        check("temperature 5 is a 400 naming the param", e.status_code == 400 and (e.body or {}).get("param") == "temperature", e)
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
        check("remote URL refused", False, "accepted")
    except openai.BadRequestError as e:
        check("remote URL refused", (e.body or {}).get("code") == "remote_url_disabled"
              and (e.body or {}).get("param") == "messages[0].content[0].image_url.url", e)
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], n=2)
        check("n = 2 is a 501", False, "accepted")
    except openai.APIStatusError as e:
        check("n = 2 is a 501", e.status_code == 501, e)
    bad = openai.OpenAI(base_url=a.base_url, api_key="wrong", max_retries=0)
    try:
        bad.models.list()
        check("wrong key refused", False, "accepted")
    except openai.AuthenticationError as e:
        check("wrong key refused", e.status_code == 401, e)

    print("%d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
