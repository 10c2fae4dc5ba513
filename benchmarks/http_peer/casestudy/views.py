"""Thin HTTP adapter: validate, call the use case, map its outcome to a status."""

from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from benchmarks.http_peer.casestudy.exceptions import AccountNotFound, IdempotencyReplay, InsufficientEnergy
from benchmarks.http_peer.casestudy.use_cases import consume_energy


class ConsumeSerializer(serializers.Serializer):
    account_id = serializers.IntegerField(min_value=1)
    amount = serializers.IntegerField(min_value=1)
    idempotency_key = serializers.CharField(max_length=255)


class ConsumeView(APIView):
    def post(self, request):
        serializer = ConsumeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            record, balance_after = consume_energy(**serializer.validated_data)
        except AccountNotFound:
            return Response({"detail": "account not found"}, status=status.HTTP_404_NOT_FOUND)
        except InsufficientEnergy:
            return Response({"detail": "insufficient energy"}, status=status.HTTP_409_CONFLICT)
        except IdempotencyReplay as replay:
            return Response(_body(replay.record, None), status=status.HTTP_200_OK)
        return Response(_body(record, balance_after), status=status.HTTP_201_CREATED)


def _body(record, balance_after: int | None) -> dict:
    return {"consumption_id": record.id, "account_id": record.account_id, "amount": record.amount,
            "idempotency_key": record.idempotency_key, "balance_after": balance_after,
            "created_at": record.created_at.isoformat()}
