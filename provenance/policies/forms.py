from __future__ import annotations

from django import forms

from provenance.core.policy import PolicyError
from provenance.policies import services

EXAMPLE = """apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: my-policy
spec:
  images:
    - glob: "ghcr.io/myorg/**"
  authorities:
    - keyless:
        url: https://fulcio.sigstore.dev
        identities:
          - issuer: https://token.actions.githubusercontent.com
            subjectRegExp: "^https://github\\\\.com/myorg/.*$"
"""


class PolicyForm(forms.Form):
    source = forms.CharField(
        label="ClusterImagePolicy YAML",
        widget=forms.Textarea(attrs={"rows": 28, "cols": 100, "spellcheck": "false", "class": "mono"}),
        max_length=256 * 1024,
        strip=False,
    )
    is_enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def clean_source(self) -> str:
        source = self.cleaned_data["source"].replace("\r\n", "\n")
        try:
            services.parse(source)
        except PolicyError as err:
            raise forms.ValidationError(err.message, code=err.code) from err
        return source
