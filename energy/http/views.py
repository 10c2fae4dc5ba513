"""Thin HTTP adapter: validate, call one use case, serialize, respond.

Every API view is a ``ClientView``: it names the scope it needs and how to read its
request; the base class runs the checks in the contract's order (401, then 400, then 403)
through DRF's permission classes before the handler sees anything.
"""

from dataclasses import dataclass

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from energy.application.accounts import get_account
from energy.application.consume import REPLAYED, consume
from energy.application.health import check_database
from energy.domain.clients import CONSUME, HTTP, READ
from energy.domain.requests import ConsumeRequest, parse_account_id
from energy.http import openapi
from energy.http.errors import HTTP_STATUS


@dataclass(frozen=True)
class AccountRef:
    """A request about one account, as the allow-list sees it."""

    account_id: int


class ClientView(APIView):
    """An endpoint for authenticated clients; ``self.subject`` is its validated request."""

    required_scope: str | None = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication and IsClient: 401
        method = request.method.lower()
        if method != "options" and method in self.http_method_names and hasattr(self, method):
            self.subject = self.validated(request, **kwargs)  # 400
            self.check_object_permissions(request, self.subject)  # scope and allow-list: 403

    def validated(self, request, **kwargs):
        """The request's validated input; it carries the ``account_id`` the allow-list is checked on."""
        raise NotImplementedError


class ConsumeView(ClientView):
    required_scope = CONSUME

    def validated(self, request, **kwargs):
        # META, not request.headers: the same header, without building a dict of all of them.
        return ConsumeRequest.from_json(request.data, request.META.get("HTTP_IDEMPOTENCY_KEY"))

    @extend_schema(**openapi.CONSUME)
    def post(self, request):
        command = self.subject
        result = consume(account_id=command.account_id, amount=command.amount,
                         idempotency_key=command.idempotency_key, client_id=request.auth.client_id, channel=HTTP)
        headers = {"Idempotent-Replayed": "true"} if result.status == REPLAYED else None
        return Response(result.to_dict(), status=HTTP_STATUS[result.status], headers=headers)


class AccountView(ClientView):
    required_scope = READ

    def validated(self, request, account_id: str):
        return AccountRef(parse_account_id(account_id))

    @extend_schema(**openapi.ACCOUNT)
    def get(self, request, account_id: str):
        return Response(get_account(account_id=self.subject.account_id))


class HealthView(APIView):
    """For load balancers and orchestrators: no token, and no view of any account."""

    authentication_classes = []
    permission_classes = []

    @extend_schema(**openapi.HEALTH)
    def get(self, request):
        check_database()
        return Response({"status": "ok"})
