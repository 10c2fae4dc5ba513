"""Thin HTTP adapter: validate, call one use case, serialize, respond."""

from rest_framework.response import Response
from rest_framework.views import APIView

from energy.application.accounts import get_balance
from energy.application.consume import REPLAYED, consume
from energy.domain.requests import ConsumeRequest, parse_account_id
from energy.http.errors import HTTP_STATUS


class ConsumeView(APIView):
    def post(self, request):
        command = ConsumeRequest.from_json(request.data, request.headers.get("Idempotency-Key"))
        result = consume(
            account_id=command.account_id, amount=command.amount, idempotency_key=command.idempotency_key
        )
        response = Response(result.to_dict(), status=HTTP_STATUS[result.status])
        if result.status == REPLAYED:
            response["Idempotent-Replayed"] = "true"
        return response


class AccountView(APIView):
    def get(self, request, account_id: str):
        account = parse_account_id(account_id)
        return Response({"account_id": account, "energy": get_balance(account_id=account)})
