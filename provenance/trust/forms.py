from __future__ import annotations

from django import forms

from provenance.core.keys import MAX_KEY_BYTES
from provenance.core.trustroot import MAX_TRUST_ROOT_BYTES


class TrustRootUploadForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="A short name, e.g. acme-sigstore.")
    description = forms.CharField(max_length=300, required=False)
    document = forms.FileField(label="trusted_root.json",
                               help_text="The private Sigstore deployment's trusted root (JSON).")

    def clean_document(self) -> bytes:
        upload = self.cleaned_data["document"]
        if upload.size > MAX_TRUST_ROOT_BYTES:
            raise forms.ValidationError(f"a trusted root is at most {MAX_TRUST_ROOT_BYTES} bytes")
        return bytes(upload.read())


class TufMirrorForm(forms.Form):
    """A private deployment's trust root from its TUF repository (``cosign initialize --mirror --root``)."""

    name = forms.SlugField(max_length=100, help_text="A short name, e.g. acme-sigstore.")
    description = forms.CharField(max_length=300, required=False)
    mirror = forms.URLField(label="TUF mirror", assume_scheme="https",
                            help_text="The TUF repository's URL, e.g. https://tuf.sigstore.example.com.")
    tuf_root = forms.FileField(label="TUF root.json", help_text="The repository's initial root.json, obtained "
                                                               "out of band: it anchors everything fetched.")

    def clean_tuf_root(self) -> bytes:
        upload = self.cleaned_data["tuf_root"]
        if upload.size > MAX_TRUST_ROOT_BYTES:
            raise forms.ValidationError(f"a TUF root is at most {MAX_TRUST_ROOT_BYTES} bytes")
        return bytes(upload.read())


class PublicKeyForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="A short name, e.g. release-key.")
    description = forms.CharField(max_length=300, required=False)
    pem = forms.CharField(label="Public key (PEM)", widget=forms.Textarea(attrs={"rows": 6}),
                          max_length=MAX_KEY_BYTES, help_text="The contents of cosign.pub.")
