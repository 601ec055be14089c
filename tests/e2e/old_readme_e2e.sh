#!/bin/bash
# The old system's README, "Полный сценарий в скрипте", with its `docker compose`
# lines (and the 30 s wait for containers) removed. Nothing else is changed.
# ORDERLY_AUTH_URL / ORDERLY_ORDERS_URL let the tests point it at other ports.

echo "=== Starting Full E2E Test ==="

# 1. Register
echo "1. Registering user..."
REGISTER=$(curl -s -X POST "http://localhost:8001/auth/register/" \
  -H "Content-Type: application/json" \
  -d '{
    "email": "test@example.com",
    "password": "test123"
  }')
echo $REGISTER

# 2. Get Token
echo "2. Getting JWT token..."
TOKEN_RESPONSE=$(curl -s -X POST "http://localhost:8001/auth/token/" \
  -H "Content-Type: application/x-www-form-urlencoded" \
  -d "username=test@example.com&password=test123")
TOKEN=$(echo $TOKEN_RESPONSE | grep -o '"access_token":"[^"]*' | cut -d'"' -f4)
echo "Token: $TOKEN"

# 3. Create Order
echo "3. Creating order..."
ORDER=$(curl -s -X POST "http://localhost:8000/orders/" \
  -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" \
  -d '{
    "items": [{"name": "Test Item", "price": 100.0, "quantity": 1}],
    "total_price": 100.0
  }')
ORDER_ID=$(echo $ORDER | grep -o '"id":"[^"]*' | cut -d'"' -f4)
echo "Order ID: $ORDER_ID"

# 4. Wait for Celery processing
echo "4. Waiting for Celery to process order (3 seconds)..."
sleep 3

# 5. Check order status
echo "5. Checking order status..."
curl -s -X GET "http://localhost:8000/orders/$ORDER_ID/" \
  -H "Authorization: Bearer $TOKEN" | grep -o '"status":"[^"]*'

echo "=== E2E Test Complete ==="
